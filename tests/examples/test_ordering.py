"""The ordering example's rules, without NATS: orders on their own, retiring, and customers keeping the
two invariants once orders are theirs (the merge itself: tests/runtime/test_merge_processes.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from radix.domain import Send
from radix.errors import DomainError
from radix.examples.ordering import (
    AbandonCustomerOrder,
    AbandonOrder,
    AddItem,
    AddOrderItem,
    AssumeOrderResponsibility,
    CreateCustomer,
    CreateOrder,
    Customer,
    CustomerCreated,
    CustomerOrderCommand,
    CustomerOrderPlaced,
    CustomerOrderStarted,
    CustomerRemoved,
    ItemAdded,
    ItemRemoved,
    Order,
    OrderAbandoned,
    OrderCommand,
    OrderCreated,
    OrderItemAdded,
    OrderItemRemoved,
    OrderPlaced,
    OrderResponsibilityAssumed,
    OrderRetired,
    OrderState,
    PlaceCustomerOrder,
    PlaceOrder,
    RemoveCustomer,
    RemoveItem,
    RemoveOrderItem,
    Retire,
    StartOrder,
    assume_orders,
    retire_orders,
)
from radix.testing import react, record, scenario


def test_an_order_is_created_once_filled_then_placed_and_nothing_changes_after() -> None:
    order = scenario(Order())
    order.when(CreateOrder(customer_id="c-1")).then(OrderCreated(customer_id="c-1"))
    order.given(OrderCreated(customer_id="c-1")).when(CreateOrder(customer_id="c-2")).then_rejected(
        "the order exists already, for customer c-1"
    )
    order.given(OrderCreated(customer_id="c-1")).when(PlaceOrder()).then_rejected(
        "the order has no items: add one before placing it"
    )
    order.given(OrderCreated(customer_id="c-1")).when(RemoveItem(item="tea")).then_rejected(
        "'tea' is not in the order: an item must be added before it is removed"
    )
    placed = order.given(OrderCreated(customer_id="c-1"), ItemAdded(item="tea"), OrderPlaced())
    placed.when(AddItem(item="jam")).then_rejected(
        "the order is placed: nothing changes after that (adding 'jam' refused)"
    )
    abandoned = order.given(OrderCreated(customer_id="c-1"), ItemAdded(item="tea"), OrderAbandoned())
    abandoned.when(PlaceOrder()).then_rejected(
        "the order is abandoned: nothing changes after that (placing it refused)"
    )
    order.when(AddItem(item="tea")).then_rejected("no such order: create it first")


def test_a_stale_place_conflicts_with_a_concurrent_removal_and_a_concurrent_add_never_does() -> None:
    order = Order()
    assert order.conflicts(PlaceOrder(), [ItemAdded(item="jam")]) is None
    assert order.conflicts(AddItem(item="jam"), [ItemRemoved(item="tea")]) is None
    assert order.conflicts(PlaceOrder(), [ItemRemoved(item="tea")]) == (
        "an item was removed concurrently; check the order and place it again"
    )


def test_a_retired_order_summarises_its_state_and_refuses_everything_after_naming_its_customer() -> None:
    order = scenario(Order()).given(OrderCreated(customer_id="c-1"), ItemAdded(item="tea"), ItemAdded(item="jam"))
    order.when(Retire()).then(OrderRetired(customer_id="c-1", items=["tea", "jam"], status="open"))
    retired = scenario(Order()).given(
        OrderCreated(customer_id="c-1"), OrderRetired(customer_id="c-1", items=[], status="open")
    )
    for command in (AddItem(item="x"), PlaceOrder(), Retire(), CreateOrder(customer_id="c-2")):
        retired.when(command).then_rejected(
            "the order is retired: customer c-1 is responsible for it now; send its commands to that customer "
            "(StartOrder, AddOrderItem, RemoveOrderItem, PlaceCustomerOrder, AbandonCustomerOrder)"
        )


def test_the_reactions_retire_each_order_and_hand_it_to_its_customer() -> None:
    created = record(OrderCreated(customer_id="c-1"), aggregate_id="o-1", aggregate_type="Order")
    assert react(retire_orders, created) == [Send(Retire(), aggregate_id="o-1")]
    assert not retire_orders.live  # run on demand, by `radix merge`
    retired = record(OrderRetired(customer_id="c-1", items=["tea"], status="placed"), aggregate_id="o-1", version=4)
    assert react(assume_orders, retired) == [
        Send(AssumeOrderResponsibility(order_id="o-1", items=["tea"], status="placed"), aggregate_id="c-1")
    ]


def test_a_customer_takes_an_order_over_once_whatever_its_state() -> None:
    assume = AssumeOrderResponsibility(order_id="o-1", items=["tea"], status="open")
    customer = scenario(Customer())
    customer.when(assume).then(OrderResponsibilityAssumed(order_id="o-1", items=["tea"], status="open"))
    customer.given(OrderResponsibilityAssumed(order_id="o-1", items=["tea"], status="open")).when(assume).then_rejected(
        "the customer is responsible for order o-1 already"
    )


def test_a_customer_keeps_its_orders_to_existing_customers_and_one_placeable_order() -> None:
    customer = scenario(Customer())
    customer.when(StartOrder(order_id="o-1")).then_rejected("no such customer: an order needs an existing customer")
    gone = customer.given(CustomerCreated(name="Ann"), CustomerRemoved())
    gone.when(StartOrder(order_id="o-1")).then_rejected("no such customer: an order needs an existing customer")
    gone.when(RemoveCustomer()).then_rejected("no such customer: only an existing customer is removed")
    ann = customer.given(
        CustomerCreated(name="Ann"),
        CustomerOrderStarted(order_id="o-1"),
        OrderItemAdded(order_id="o-1", item="tea"),
        CustomerOrderStarted(order_id="o-2"),
    )
    ann.when(AddOrderItem(order_id="o-2", item="jam")).then_rejected(
        "order o-1 is placeable already: place or abandon it before filling another"
    )
    ann.when(AddOrderItem(order_id="o-1", item="jam")).then(OrderItemAdded(order_id="o-1", item="jam"))
    ann.when(RemoveOrderItem(order_id="o-1", item="jam")).then_rejected(
        "'jam' is not in the order: an item must be added before it is removed"
    )
    ann.when(PlaceCustomerOrder(order_id="o-2")).then_rejected("the order has no items: add one before placing it")
    ann.when(StartOrder(order_id="o-1")).then_rejected("order o-1 exists already")
    ann.when(AbandonCustomerOrder(order_id="o-3")).then_rejected("the customer has no order o-3: start it first")
    placed = ann.given(
        CustomerCreated(name="Ann"),
        CustomerOrderStarted(order_id="o-1"),
        OrderItemAdded(order_id="o-1", item="tea"),
        CustomerOrderPlaced(order_id="o-1"),
        CustomerOrderStarted(order_id="o-2"),
    )
    placed.when(AddOrderItem(order_id="o-2", item="jam")).then(OrderItemAdded(order_id="o-2", item="jam"))
    customer.when(CreateCustomer(name="Ann")).then(CustomerCreated(name="Ann"))
    customer.given(CustomerCreated(name="Ann")).when(CreateCustomer(name="Bo")).then_rejected(
        "the customer exists already, as 'Ann'"
    )


def test_a_stale_place_of_a_customer_order_conflicts_with_a_removal_from_that_order_only() -> None:
    customer = Customer()
    place = PlaceCustomerOrder(order_id="o-1")
    assert customer.conflicts(place, [OrderItemRemoved(order_id="o-2", item="tea")]) is None
    assert customer.conflicts(place, [OrderItemRemoved(order_id="o-1", item="tea")]) == (
        "an item was removed concurrently; check the order and place it again"
    )


ORDER_COMMANDS = st.one_of(
    st.builds(AddItem, item=st.sampled_from(["tea", "jam"])),
    st.builds(RemoveItem, item=st.sampled_from(["tea", "jam"])),
    st.just(PlaceOrder()),
    st.just(AbandonOrder()),
)


@given(st.lists(ORDER_COMMANDS, max_size=12))
def test_a_customer_holds_an_order_as_the_order_held_it_and_goes_on_alike(commands: list[OrderCommand]) -> None:
    """Whatever an order went through before it retired, its customer starts from the same state and
    answers the same commands (sent as the customer's) the same way."""
    order, customer = Order(), Customer()
    held = order.evolve(order.initial_state(), OrderCreated(customer_id="c-1"))
    for command in commands[: len(commands) // 2]:
        try:
            for event in order.decide(held, command):
                held = order.evolve(held, event)
        except DomainError:
            pass
    (retired,) = order.decide(held, Retire())
    assert isinstance(retired, OrderRetired)
    state = customer.evolve(customer.initial_state(), CustomerCreated(name="Ann"))
    (assumed,) = customer.decide(
        state, AssumeOrderResponsibility(order_id="o-1", items=retired.items, status=retired.status)
    )
    state = customer.evolve(state, assumed)
    assert state.orders["o-1"] == OrderState(tuple(retired.items), retired.status)
    for command in commands[len(commands) // 2 :]:
        order_events, order_refusal = _outcome(order, held, command)
        customer_events, customer_refusal = _outcome(customer, state, _as_customer(command))
        assert order_refusal == customer_refusal
        for event in order_events:
            held = order.evolve(held, event)
        for event in customer_events:
            state = customer.evolve(state, event)
        assert state.orders["o-1"] == held.order


def _outcome(aggregate: Any, state: Any, command: Any) -> tuple[list[Any], str | None]:
    """The events `command` is decided into, or the reason it is refused."""
    try:
        return list(aggregate.decide(state, command)), None
    except DomainError as e:
        return [], e.reason


def _as_customer(command: OrderCommand) -> CustomerOrderCommand:
    match command:
        case AddItem(item=item):
            return AddOrderItem(order_id="o-1", item=item)
        case RemoveItem(item=item):
            return RemoveOrderItem(order_id="o-1", item=item)
        case PlaceOrder():
            return PlaceCustomerOrder(order_id="o-1")
    return AbandonCustomerOrder(order_id="o-1")
