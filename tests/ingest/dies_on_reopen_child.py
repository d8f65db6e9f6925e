"""A capture child (ingest/capture_child.py) that, the second time one is started, dies at its first grab (a
transient out-of-memory kill as the footage is reopened): the starts are counted in the file named by
ALPR_TEST_STARTS_FILE. For tests/ingest/test_footage_first_frame.py."""

import os
import sys
from pathlib import Path

import ingest.capture_child as child

starts_file = Path(os.environ["ALPR_TEST_STARTS_FILE"])
started_before = int(starts_file.read_text()) if starts_file.exists() else 0
starts_file.write_text(str(started_before + 1))
real_answer = child.answer_call


def answer_call(channel, capture, frames):  # type: ignore[no-untyped-def]
    call, argument = channel.wait_message()
    if call == "grab" and started_before == 1:
        os._exit(137)
    channel.wait_message = lambda: (call, argument)  # the call handed to the real answer
    try:
        return real_answer(channel, capture, frames)
    finally:
        del channel.wait_message


child.answer_call = answer_call
if __name__ == "__main__":
    child.main(sys.argv[1:])
