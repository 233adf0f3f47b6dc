"""A real RTSP server for the live-stream tests: GStreamer's RTSP server (Debian's python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/-ugly), run with the system Python in a
subprocess by ``tests/live_servers.py``.

    /usr/bin/python3 tests/rtsp_server.py PORT FPS SECONDS

serves ``rtsp://127.0.0.1:PORT/live``: a moving ball, 160x120, H.264 at FPS (a key frame every
second), bound to 127.0.0.1 only. Prints ``ready`` when it listens and quits by itself after
SECONDS (every test server stops on its own)."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, fps, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate={fps}/1 "
    f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/live", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
loop = GLib.MainLoop()
GLib.timeout_add(int(seconds * 1000), loop.quit)
print("ready", flush=True)
loop.run()
