"""Serve an H.264 mp4 over RTSP at rtsp://127.0.0.1:PORT/test (Debian's GStreamer RTSP server).

    /usr/bin/python3 rtsp_server.py CLIP.mp4 [PORT] [audio]
    /usr/bin/python3 rtsp_server.py --record OUT.ts [PORT] [audio]

A test and benchmark helper, not part of the package's runtime: it needs
Debian's own python3 with python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-good and -bad (see .ci/setup_live.sh). The file is
played once per client, in real time (the server's sinks follow the clock),
from its start; a client that reconnects gets it from the start again.
Prints the URL on stdout once it listens. Killing the process is an honest
network outage for the reconnect tests. With `audio`, the clip's AAC track is
served too (a second RTP stream, as a camera with a microphone sends it).
With --record, it takes a client's published H.264 (RTSP RECORD, what a camera
or an encoder pushing to a media server does) at rtsp://127.0.0.1:PORT/test and
writes it, as received, to OUT.ts (MPEG-TS: playable up to where it stops); with `audio`, the
published AAC too (the publisher's second stream).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    Gst.init(None)
    args = sys.argv[1:]
    record = args[0] == "--record"
    if record:
        args = args[1:]
    path = args[0]
    port = args[1] if len(args) > 1 else "8554"
    srv = GstRtspServer.RTSPServer()
    srv.set_address("127.0.0.1")
    srv.set_service(port)
    f = GstRtspServer.RTSPMediaFactory()
    audio = len(args) > 2 and args[2] == "audio"
    if record:
        f.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        video = f"rtph264depay name=depay0 ! h264parse ! mpegtsmux ! filesink location={path} sync=false"
        # the audio in a file of its own beside it (ADTS AAC): one muxer for both got no video
        sound = f" rtpmp4gdepay name=depay1 ! aacparse ! audio/mpeg,stream-format=adts ! filesink location={path}.aac sync=false" if audio else ""
        f.set_launch(f"( {video}{sound} )")
    else:
        video = "d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96"
        sound = " d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97" if audio else ""
        f.set_launch(f"( filesrc location={path} ! qtdemux name=d {video}{sound} )")
    f.set_shared(False)  # each (re)connecting client gets a fresh pipeline from the start
    srv.get_mount_points().add_factory("/test", f)
    if srv.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"rtsp://127.0.0.1:{port}/test", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
