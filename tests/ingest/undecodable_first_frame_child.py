"""A capture child (ingest/capture_child.py) whose video's first frame does not decode: its first retrieve
answers nothing. For tests/ingest/test_footage_first_frame.py."""

import sys

import ingest.capture_child as child

real_answer = child.answer_call
grabs = {"count": 0}


def answer_call(channel, capture, frames):  # type: ignore[no-untyped-def]
    call, argument = channel.wait_message()
    if call == "grab":
        grabs["count"] += 1
    if call == "retrieve" and grabs["count"] == 1:
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
