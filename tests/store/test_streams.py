"""How the store retries: writes refused while another is in flight, and requests JetStream does not answer."""

from __future__ import annotations

import nats.errors
import pytest

from radix.store.streams import (
    ERR_WRITE_IN_FLIGHT,
    ERR_WRONG_LAST_SEQUENCE,
    publish_settled,
    with_backoff,
    wrong_last_sequence,
)


async def test_a_write_refused_while_another_is_in_flight_is_sent_again() -> None:
    """10164 (another write to the subject being proposed) means nothing was stored: send it again."""
    answers = [ERR_WRITE_IN_FLIGHT, ERR_WRITE_IN_FLIGHT, None]
    sent: list[int | None] = []

    async def send() -> int | None:
        sent.append(answers[len(sent)])
        return sent[-1]

    assert await publish_settled(send, lambda code: code) is None
    assert len(sent) == 3


async def test_a_write_refused_in_flight_for_too_long_answers_the_refusal() -> None:
    """Past a few short pauses, the refusal is returned: the caller treats it as a changed sequence."""
    sent = 0

    async def send() -> int:
        nonlocal sent
        sent += 1
        return ERR_WRITE_IN_FLIGHT

    code = await publish_settled(send, lambda c: c)
    assert (code, sent) == (ERR_WRITE_IN_FLIGHT, 6)
    assert wrong_last_sequence(code)
    assert wrong_last_sequence(ERR_WRONG_LAST_SEQUENCE)
    assert not wrong_last_sequence(10077)


async def test_backoff_retries_only_what_it_is_told_and_gives_up() -> None:
    """`with_backoff` retries the listed errors until its time is up, and lets any other error through at once."""
    tries = 0

    async def no_responders() -> None:
        nonlocal tries
        tries += 1
        raise nats.errors.NoRespondersError

    with pytest.raises(nats.errors.NoRespondersError):
        await with_backoff(no_responders, retry_on=(nats.errors.NoRespondersError,), wait=0.2, delay=0.01)
    assert tries > 2
    tries = 0
    with pytest.raises(nats.errors.NoRespondersError):
        await with_backoff(no_responders, retry_on=(nats.errors.TimeoutError,), wait=5)
    assert tries == 1
