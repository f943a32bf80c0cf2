"""The ordering example: customers and their orders, while the orders move into their customer.

It began as two aggregates. `Customer`: created once, removed if it exists. `Order`: created for a
customer; items added and removed (an item must be added before it is removed); placed (it needs
items and must not be abandoned) or abandoned; nothing changes after either.

Two new invariants only the customer can protect: no order for a customer that does not exist, and at
most one placeable order (open, with items) per customer. So the orders move into their customer, in
stages, while commands keep flowing (docs/merging-aggregates.md):

- `Order` gains `Retire`: it summarises its state in `OrderRetired`, and from then on refuses every
  command with a reason that names the customer now responsible;
- `Customer` gains `AssumeOrderResponsibility`, recorded as `OrderResponsibilityAssumed`, and the
  order commands of its own (`StartOrder`, `AddOrderItem`, ...), which keep both invariants;
- the reaction `retire-orders` (on `OrderCreated`, run on demand by `radix merge`, for a chosen subset
  first) sends `Retire`; the reaction `assume-orders` (on `OrderRetired`, run by the nodes) sends
  `AssumeOrderResponsibility` to the order's customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from radix.domain import Aggregate, BoundedContext, Command, Event, Record, Send, reaction
from radix.errors import DomainError

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Status = Literal["open", "placed", "abandoned"]


class OrderingCommand(Command):
    """Commands of the ordering context."""


class CustomerCommand(OrderingCommand):
    """Commands to one customer."""


class CreateCustomer(CustomerCommand):
    name: Name


class RemoveCustomer(CustomerCommand):
    pass


class AssumeOrderResponsibility(CustomerCommand):
    """Take an order over from the `Order` aggregate that retired, with its state then."""

    order_id: Name
    items: list[str]
    status: Status


class CustomerOrderCommand(CustomerCommand):
    """Commands to one of the orders a customer is responsible for."""

    order_id: Name


class StartOrder(CustomerOrderCommand):
    pass


class AddOrderItem(CustomerOrderCommand):
    item: Name


class RemoveOrderItem(CustomerOrderCommand):
    item: Name


class PlaceCustomerOrder(CustomerOrderCommand):
    pass


class AbandonCustomerOrder(CustomerOrderCommand):
    pass


class OrderCommand(OrderingCommand):
    """Commands to one order (until it retires)."""


class CreateOrder(OrderCommand):
    customer_id: Name


class AddItem(OrderCommand):
    item: Name


class RemoveItem(OrderCommand):
    item: Name


class PlaceOrder(OrderCommand):
    pass


class AbandonOrder(OrderCommand):
    pass


class Retire(OrderCommand):
    """Hand the order to its customer: its state is summarised in `OrderRetired`."""


class OrderingEvent(Event):
    """Events of the ordering context."""


class CustomerEvent(OrderingEvent):
    """Events of one customer."""


class CustomerCreated(CustomerEvent):
    name: str


class CustomerRemoved(CustomerEvent):
    pass


class OrderResponsibilityAssumed(CustomerEvent):
    order_id: str
    items: list[str]
    status: Status


class CustomerOrderStarted(CustomerEvent):
    order_id: str


class OrderItemAdded(CustomerEvent):
    order_id: str
    item: str


class OrderItemRemoved(CustomerEvent):
    order_id: str
    item: str


class CustomerOrderPlaced(CustomerEvent):
    order_id: str


class CustomerOrderAbandoned(CustomerEvent):
    order_id: str


class OrderEvent(OrderingEvent):
    """Events of one order."""


class OrderCreated(OrderEvent):
    customer_id: str


class ItemAdded(OrderEvent):
    item: str


class ItemRemoved(OrderEvent):
    item: str


class OrderPlaced(OrderEvent):
    pass


class OrderAbandoned(OrderEvent):
    pass


class OrderRetired(OrderEvent):
    """The order's state when it retired; its customer is responsible for it from then on."""

    customer_id: str
    items: list[str]
    status: Status


class OrderState(msgspec.Struct, frozen=True):
    """One order: whose, its items (an item once per time added), where it stands."""

    items: tuple[str, ...] = ()
    status: Status = "open"

    @property
    def placeable(self) -> bool:
        return self.status == "open" and bool(self.items)

    def adding(self, item: str) -> OrderState:
        return OrderState((*self.items, item), self.status)

    def removing(self, item: str) -> OrderState:
        items = list(self.items)
        items.remove(item)
        return OrderState(tuple(items), self.status)


def _check_change(order: OrderState, command: str) -> None:
    if order.status != "open":
        raise DomainError(f"the order is {order.status}: nothing changes after that ({command} refused)")


def _check_place(order: OrderState) -> None:
    _check_change(order, "placing it")
    if not order.items:
        raise DomainError("the order has no items: add one before placing it")


def _check_remove(order: OrderState, item: str) -> None:
    _check_change(order, f"removing {item!r}")
    if item not in order.items:
        raise DomainError(f"{item!r} is not in the order: an item must be added before it is removed")


class HeldOrder(msgspec.Struct, frozen=True):
    """An order as its own aggregate holds it: `customer_id` is None until it is created."""

    customer_id: str | None = None
    order: OrderState = OrderState()
    retired: bool = False


class Order(Aggregate[HeldOrder, OrderCommand, OrderEvent]):
    """An order, until it retires into its customer."""

    def initial_state(self) -> HeldOrder:
        return HeldOrder()

    def evolve(self, state: HeldOrder, event: OrderEvent) -> HeldOrder:
        match event:
            case OrderCreated(customer_id=customer):
                return HeldOrder(customer, OrderState())
            case ItemAdded(item=item):
                return msgspec.structs.replace(state, order=state.order.adding(item))
            case ItemRemoved(item=item):
                return msgspec.structs.replace(state, order=state.order.removing(item))
            case OrderPlaced():
                return msgspec.structs.replace(state, order=OrderState(state.order.items, "placed"))
            case OrderAbandoned():
                return msgspec.structs.replace(state, order=OrderState(state.order.items, "abandoned"))
            case OrderRetired():
                return msgspec.structs.replace(state, retired=True)
        return state

    def decide(self, state: HeldOrder, command: OrderCommand) -> list[OrderEvent]:
        if state.retired:
            raise DomainError(
                f"the order is retired: customer {state.customer_id} is responsible for it now; send its "
                "commands to that customer (StartOrder, AddOrderItem, RemoveOrderItem, PlaceCustomerOrder, "
                "AbandonCustomerOrder)"
            )
        if isinstance(command, CreateOrder):
            if state.customer_id is not None:
                raise DomainError(f"the order exists already, for customer {state.customer_id}")
            return [OrderCreated(customer_id=command.customer_id)]
        if state.customer_id is None:
            raise DomainError("no such order: create it first")
        order = state.order
        match command:
            case AddItem(item=item):
                _check_change(order, f"adding {item!r}")
                return [ItemAdded(item=item)]
            case RemoveItem(item=item):
                _check_remove(order, item)
                return [ItemRemoved(item=item)]
            case PlaceOrder():
                _check_place(order)
                return [OrderPlaced()]
            case AbandonOrder():
                _check_change(order, "abandoning it")
                return [OrderAbandoned()]
            case Retire():
                return [OrderRetired(customer_id=state.customer_id, items=list(order.items), status=order.status)]
        raise DomainError(f"{type(command).__name__} is not handled")

    def conflicts(self, command: OrderCommand, concurrent: Sequence[OrderEvent]) -> str | None:
        """A concurrent add never conflicts; a stale place conflicts with a concurrent removal."""
        if isinstance(command, PlaceOrder) and any(isinstance(e, ItemRemoved) for e in concurrent):
            return "an item was removed concurrently; check the order and place it again"
        return None


class CustomerState(msgspec.Struct, frozen=True):
    """A customer: `name` is None until created; the orders it is responsible for, by id."""

    name: str | None = None
    removed: bool = False
    orders: dict[str, OrderState] = {}

    @property
    def exists(self) -> bool:
        return self.name is not None and not self.removed

    def with_order(self, order_id: str, order: OrderState) -> CustomerState:
        return msgspec.structs.replace(self, orders={**self.orders, order_id: order})


class Customer(Aggregate[CustomerState, CustomerCommand, CustomerEvent]):
    """A customer, and the orders it is responsible for: no order without an existing customer, and at
    most one placeable order (open, with items) at a time."""

    def initial_state(self) -> CustomerState:
        return CustomerState()

    def evolve(self, state: CustomerState, event: CustomerEvent) -> CustomerState:
        orders = state.orders
        match event:
            case CustomerCreated(name=name):
                return msgspec.structs.replace(state, name=name)
            case CustomerRemoved():
                return msgspec.structs.replace(state, removed=True)
            case OrderResponsibilityAssumed(order_id=order_id, items=items, status=status):
                return state.with_order(order_id, OrderState(tuple(items), status))
            case CustomerOrderStarted(order_id=order_id):
                return state.with_order(order_id, OrderState())
            case OrderItemAdded(order_id=order_id, item=item):
                return state.with_order(order_id, orders[order_id].adding(item))
            case OrderItemRemoved(order_id=order_id, item=item):
                return state.with_order(order_id, orders[order_id].removing(item))
            case CustomerOrderPlaced(order_id=order_id):
                return state.with_order(order_id, OrderState(orders[order_id].items, "placed"))
            case CustomerOrderAbandoned(order_id=order_id):
                return state.with_order(order_id, OrderState(orders[order_id].items, "abandoned"))
        return state

    def decide(self, state: CustomerState, command: CustomerCommand) -> list[CustomerEvent]:
        match command:
            case CreateCustomer(name=name):
                if state.name is not None:
                    raise DomainError(f"the customer exists already, as {state.name!r}")
                return [CustomerCreated(name=name)]
            case RemoveCustomer():
                if not state.exists:
                    raise DomainError("no such customer: only an existing customer is removed")
                return [CustomerRemoved()]
            case AssumeOrderResponsibility(order_id=order_id, items=items, status=status):
                # Taken whatever the customer's state: the order retired and must land somewhere. The new
                # invariants hold for what is done from now on.
                if order_id in state.orders:
                    raise DomainError(f"the customer is responsible for order {order_id} already")
                return [OrderResponsibilityAssumed(order_id=order_id, items=items, status=status)]
        assert isinstance(command, CustomerOrderCommand)
        if not state.exists:
            raise DomainError("no such customer: an order needs an existing customer")
        order_id = command.order_id
        if isinstance(command, StartOrder):
            if order_id in state.orders:
                raise DomainError(f"order {order_id} exists already")
            return [CustomerOrderStarted(order_id=order_id)]
        order = state.orders.get(order_id)
        if order is None:
            raise DomainError(f"the customer has no order {order_id}: start it first")
        match command:
            case AddOrderItem(item=item):
                _check_change(order, f"adding {item!r}")
                other = next((i for i, o in state.orders.items() if o.placeable and i != order_id), None)
                if other is not None and not order.placeable:
                    raise DomainError(f"order {other} is placeable already: place or abandon it before filling another")
                return [OrderItemAdded(order_id=order_id, item=item)]
            case RemoveOrderItem(item=item):
                _check_remove(order, item)
                return [OrderItemRemoved(order_id=order_id, item=item)]
            case PlaceCustomerOrder():
                _check_place(order)
                return [CustomerOrderPlaced(order_id=order_id)]
            case AbandonCustomerOrder():
                _check_change(order, "abandoning it")
                return [CustomerOrderAbandoned(order_id=order_id)]
        raise DomainError(f"{type(command).__name__} is not handled")

    def conflicts(self, command: CustomerCommand, concurrent: Sequence[CustomerEvent]) -> str | None:
        """A stale place conflicts with a concurrent removal from the same order; nothing else does."""
        if isinstance(command, PlaceCustomerOrder) and any(
            isinstance(e, OrderItemRemoved) and e.order_id == command.order_id for e in concurrent
        ):
            return "an item was removed concurrently; check the order and place it again"
        return None


@reaction("retire-orders", on=[OrderCreated], live=False)
def retire_orders(record: Record[OrderCreated]) -> list[Send]:
    """Each order retires into its customer (run on demand, in stages, by `radix merge`)."""
    return [Send(Retire(), aggregate_id=record.aggregate_id)]


@reaction("assume-orders", on=[OrderRetired])
def assume_orders(record: Record[OrderRetired]) -> list[Send]:
    """A retired order's customer takes it over, with its state."""
    event = record.event
    assume = AssumeOrderResponsibility(order_id=record.aggregate_id, items=event.items, status=event.status)
    return [Send(assume, aggregate_id=event.customer_id)]


ordering = BoundedContext("ordering", [Customer(), Order()], reactions=[retire_orders, assume_orders])
