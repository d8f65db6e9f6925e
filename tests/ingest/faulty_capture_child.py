"""A capture child (ingest/capture_child.py) with one fault, named by ALPR_TEST_CHILD_FAULT:
`undecodable_first`: its video's first frame does not decode (the first retrieve answers nothing);
`dies_on_reopen`: the second child started (counted in the file ALPR_TEST_STARTS_FILE names) dies at its first
grab, as a transient out-of-memory kill while the footage is reopened. For tests/ingest/test_footage_first_frame.py."""

import os
import sys
from pathlib import Path

import ingest.capture_child as child

fault = os.environ["ALPR_TEST_CHILD_FAULT"]
started_before = 0
if fault == "dies_on_reopen":
    starts_file = Path(os.environ["ALPR_TEST_STARTS_FILE"])
    started_before = int(starts_file.read_text()) if starts_file.exists() else 0
    starts_file.write_text(str(started_before + 1))
real_answer = child.answer_call
grabs = {"count": 0}


def answer_call(channel, capture, frames):  # type: ignore[no-untyped-def]
    call, argument = channel.wait_message()
    if call == "grab":
        grabs["count"] += 1
        if fault == "dies_on_reopen" and started_before == 1:
            os._exit(137)
    if call == "retrieve" and fault == "undecodable_first" and grabs["count"] == 1:
        capture.retrieve()
        channel.send(None)
        return True
    channel.wait_message = lambda: (call, argument)  # the call handed to the real answer
    try:
        return real_answer(channel, capture, frames)
    finally:
        del channel.wait_message


child.answer_call = answer_call
if __name__ == "__main__":
    child.main(sys.argv[1:])
