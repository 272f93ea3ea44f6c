"""The worker that judges an uploaded file by decoding it: ``python -m hcm.apps.serve.probe FILE``.

It runs in its own process, started per upload by :func:`hcm.apps.serve.uploads.probe_upload`
with a time limit, so a file that hangs or crashes the decoder takes only this process down. It
caps its own CPU time and memory, decodes every frame of the first video and audio stream with
PyAV, and prints one JSON line: ``{"ok": true, "format": ..., "video_frames": n, "audio_frames": m,
"seconds": s}``, or ``{"ok": false, "error": ...}`` for a file that is not a clip.
"""

from __future__ import annotations

import json
import resource
import sys

CPU_SECONDS = 60  # the parent's wall-clock limit is shorter; this stops a runaway decoder regardless
MEMORY_BYTES = 2 * 1024 ** 3


def limit_self() -> None:
    """Cap this process's CPU time and address space (best effort where the system refuses)."""
    for kind, value in ((resource.RLIMIT_CPU, CPU_SECONDS), (resource.RLIMIT_AS, MEMORY_BYTES)):
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass


def decode(path: str) -> dict:
    """Decode the first video and the first audio stream of ``path`` to the end."""
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            if video is None and audio is None:
                return {"ok": False, "error": "it holds no video or audio stream"}
            counts = {"video": 0, "audio": 0}
            for frame in container.decode(*[s for s in (video, audio) if s is not None]):
                counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
            seconds = float(container.duration / av.time_base) if container.duration else None
            if not any(counts.values()):
                return {"ok": False, "error": "no frame of it decodes"}
            return {"ok": True, "format": container.format.name, "video_frames": counts["video"],
                    "audio_frames": counts["audio"], "seconds": seconds}
    except (av.FFmpegError, ValueError, OSError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        return {"ok": False, "error": f"it does not decode as video or audio ({reason})"}


if __name__ == "__main__":
    limit_self()
    print(json.dumps(decode(sys.argv[1])))
