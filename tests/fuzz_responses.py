"""Coverage-guided fuzzing (atheris, libFuzzer) of what a broker can send: the frame splitter and every response
decoder of every version kafkaprod speaks.

The first input byte picks the API version, the rest is fed to a FrameSplitter in pieces (the second byte picks
the piece size) and each complete frame to the decoder. Anything but a decoded body or ProtocolError is a crash;
libFuzzer's -rss_limit_mb and -timeout catch unbounded allocations and hangs.

    python tests/fuzz_responses.py -runs=100000 -max_len=4096 -rss_limit_mb=1024 -timeout=5

tests/test_protocol_fuzz.py runs a bounded session of it in the suite.
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from kafkaprod.errors import ProtocolError
    from kafkaprod.protocol import FrameSplitter, decode_response
    from kafkaprod.protocol.messages import APIS

VERSIONS = [(key, v) for key, api in sorted(APIS.items()) for v in range(api.min_version, api.max_version + 1)]
MAX_FRAME = 1 << 16


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    api_key, version = VERSIONS[data[0] % len(VERSIONS)]
    piece = 1 + data[1] % 64
    stream = data[2:]
    splitter = FrameSplitter(MAX_FRAME)
    try:
        for start in range(0, len(stream), piece):
            for frame in splitter.feed(stream[start:start + piece]):
                try:
                    decode_response(api_key, version, frame)
                except ProtocolError:
                    pass
        # The same bytes as one whole frame, whatever their size prefix said.
        decode_response(api_key, version, stream)
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
