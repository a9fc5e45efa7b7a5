"""Deterministic speech synthesis with libespeak-ng (from the ``espeakng-loader`` wheel).

libespeak-ng keeps state between calls (wave generator filters, echo buffers, libc ``rand``), so
its output for a given text and voice depends on what the process synthesized before. To make
every utterance a pure function of its request we initialise the library once in a clean helper
process and fork a fresh child for each utterance: every child starts from the same memory image,
re-seeds libc's ``rand`` and synthesizes exactly one request. Parallelism comes from several such
helper processes, each owning a slice of the requests.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3
_HEADER = struct.Struct("<qi")  # request index, number of int16 samples (-1 on failure)


@dataclass(frozen=True)
class SynthesisRequest:
    """One utterance: text, espeak voice (``accent+variant``), rate, pitch and noise seed.

    ``noise_seed`` seeds espeak's own noise generator (breathy and whispered voices use it); the
    library would otherwise seed it from the wall clock.
    """

    text: str
    voice: str
    rate_wpm: int
    pitch: int
    noise_seed: int


def synthesize(
    requests: Sequence[SynthesisRequest],
    workers: int = 1,
    progress: Callable[[int], object] | None = None,
) -> tuple[list[np.ndarray], int]:
    """Synthesize every request; returns int16 waveforms (in request order) and the sample rate.

    ``progress(1)`` is called as each waveform arrives (a progress bar's ``update``).

    The output of each request depends only on the request itself, not on the order, the
    number of workers or what was synthesized before.
    """
    workers = max(1, min(workers, len(requests)))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(workers)
    ]
    for rank, proc in enumerate(procs):
        batch = [{"index": i, **asdict(r)} for i, r in enumerate(requests) if i % workers == rank]
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(batch).encode())
        proc.stdin.close()
    waves: list[np.ndarray | None] = [None] * len(requests)
    sample_rate = 0
    for proc in procs:
        assert proc.stdout is not None
        (sample_rate,) = struct.unpack("<i", _read_exactly(proc.stdout, 4))
        while header := proc.stdout.read(_HEADER.size):
            index, n_samples = _HEADER.unpack(header)
            if n_samples < 0:
                raise RuntimeError(f"espeak-ng failed on request {requests[index]}")
            waves[index] = np.frombuffer(_read_exactly(proc.stdout, 2 * n_samples), dtype="<i2")
            if progress is not None:
                progress(1)
        if proc.wait() != 0:
            raise RuntimeError(f"espeak-ng helper exited with status {proc.returncode}")
    missing = [requests[i] for i, w in enumerate(waves) if w is None]
    if missing:
        raise RuntimeError(f"espeak-ng returned no audio for {missing[:5]}")
    return [w for w in waves if w is not None], sample_rate


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise RuntimeError("espeak-ng helper stopped mid-response")
    return data


# ---- helper process -----------------------------------------------------------------------------

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _load_library() -> tuple[ctypes.CDLL, int]:
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    sample_rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
    )
    if sample_rate <= 0:
        raise RuntimeError("espeak_Initialize failed")
    return lib, sample_rate


def _synthesize_in_child(lib: ctypes.CDLL, request: dict) -> bytes:
    """Runs in a freshly forked child: one request, from the pristine initialised state."""
    lib.espeak_ng_SetRandSeed(ctypes.c_long(int(request["noise_seed"])))
    ctypes.CDLL(None).srand(0)  # older builds draw from libc's rand as well
    chunks: list[bytes] = []

    @_CALLBACK
    def collect(wav, n_samples, _events):
        if n_samples > 0:
            chunks.append(ctypes.string_at(wav, 2 * n_samples))
        return 0

    lib.espeak_SetSynthCallback(collect)
    if lib.espeak_SetVoiceByName(request["voice"].encode()) != 0:
        raise RuntimeError(f"unknown espeak voice {request['voice']!r}")
    lib.espeak_SetParameter(_ESPEAK_RATE, int(request["rate_wpm"]), 0)
    lib.espeak_SetParameter(_ESPEAK_PITCH, int(request["pitch"]), 0)
    text = request["text"].encode() + b"\0"
    if lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, 0, None, None) != 0:
        raise RuntimeError("espeak_Synth failed")
    lib.espeak_Synchronize()
    return b"".join(chunks)


def _serve() -> None:
    lib, sample_rate = _load_library()
    requests = json.loads(sys.stdin.buffer.read())
    out = sys.stdout.buffer
    out.write(struct.pack("<i", sample_rate))
    for request in requests:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_fd)
            status = 0
            try:
                pcm = _synthesize_in_child(lib, request)
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(pcm)
            except BaseException:
                status = 1
            os._exit(status)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            pcm = pipe.read()
        _, status = os.waitpid(pid, 0)
        n_samples = len(pcm) // 2 if status == 0 else -1
        out.write(_HEADER.pack(request["index"], n_samples))
        if n_samples >= 0:
            out.write(pcm)
    out.flush()


if __name__ == "__main__":
    _serve()
