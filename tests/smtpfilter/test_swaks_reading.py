"""tests/servers/swaks.py reads swaks's transcript for the reply that settled a message.

It used to take the second-to-last reply. When the session ended with no answer to the
final dot (swaks's timeout, a dropped connection), that was RCPT's 250, and a test read
it as "relayed": one CI run's failure then looked like a message the next hop had lost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.servers.smtp_sink import Sink
from tests.servers.stall import stalling_relay
from tests.servers.swaks import settling_reply, swaks


def test_a_session_dropped_before_the_reply_to_the_dot_is_no_250(tmp_path: Path, sink: Sink) -> None:
    message = tmp_path / "message.eml"
    message.write_bytes(b"Subject: hi\r\n\r\nSTALL-HERE\r\n")
    assert swaks(sink.port, message).startswith("250")  # (the sink itself answers)
    with stalling_relay(("127.0.0.1", sink.port), b"STALL-HERE") as relay:
        def drop_once_stalled() -> None:
            deadline = time.monotonic() + 60
            while not relay.stalled and time.monotonic() < deadline:
                time.sleep(0.05)
            relay.close()

        dropper = threading.Thread(target=drop_once_stalled)
        dropper.start()
        reply = swaks(relay.port, message)
        dropper.join()
    assert relay.stalled == 1
    assert reply.startswith("no reply to the final dot"), reply


def test_the_reply_is_the_answer_to_the_dot_or_the_refusal_before_it() -> None:
    greeting_to_data = ["220 sink", "250-sink", "250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok",
                        "354 End data with <CR><LF>.<CR><LF>"]
    assert settling_reply([*greeting_to_data, "250-2.0.0 Ok", "250 2.0.0 queued", "221 Bye"], "") \
        == "250 2.0.0 queued"
    assert settling_reply([*greeting_to_data, "451 4.3.0 try later", "221 Bye"], "") == "451 4.3.0 try later"
    assert settling_reply(["220 sink", "250 sink", "550 5.7.1 go away", "221 Bye"], "") == "550 5.7.1 go away"
    assert settling_reply(["421 4.3.2 shutting down"], "") == "421 4.3.2 shutting down"
    assert settling_reply(["220 sink", "250 sink"], "(transcript)").endswith("(transcript)")
