#!/usr/bin/env bash
# The live-stream tests' RTSP server: Debian's GStreamer RTSP server, run by Debian's own python3
# (tests/rtsp_server.py); and a media server to publish to: nginx with its RTMP module
# (tests/test_live_publish.py starts its own on a free port; the package's own service is not used). Idempotent and quick when the packages are there. Never fails the caller:
# without the server tests/test_live.py skips its server tests with the reason (or fails them
# when IDEUD_LIVE_REQUIRED=1).
set -uo pipefail
pkgs=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad nginx-light libnginx-mod-rtmp)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup_live: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  if ! $sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/setup_live.log 2>&1; then
    $sudo_ apt-get update -q >>/tmp/setup_live.log 2>&1
    $sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/setup_live.log 2>&1 \
      || { echo "setup_live: apt-get install failed (see /tmp/setup_live.log); live server tests will skip"; [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] && echo "setup_live: nginx-rtmp ready" \
  || echo "setup_live: nginx-rtmp missing; the publishing test will skip"
exit 0; }
  fi
fi
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
  && echo "setup_live: RTSP server ready" || echo "setup_live: GStreamer RTSP server not importable; live server tests will skip"
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] && echo "setup_live: nginx-rtmp ready" \
  || echo "setup_live: nginx-rtmp missing; the publishing test will skip"
exit 0
