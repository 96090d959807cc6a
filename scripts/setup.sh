#!/bin/sh
# Installs the Debian 12 packages itscam needs to build, test and benchmark. The GStreamer
# and python3-gi packages run the camera emulators of ../shared/tools/cams (test_rtsp);
# ffmpeg and time are for bench/decode_cost.sh. mosquitto and redis-server are the real
# brokers test_publish and bench/broker_outage.sh start (libmosquitto-dev and
# libhiredis-dev are what src/sinks/publish.c builds against).
# Idempotent: packages already present are skipped by apt. Run as root (or with sudo).
set -e
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev
  libdnnl-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libonnx-testdata
  libjpeg62-turbo-dev libpng-dev libjansson-dev libyaml-dev
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libavdevice-dev
  libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev libmosquitto-dev libhiredis-dev
  python3 python3-numpy curl openssl
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  ffmpeg iproute2 time mosquitto redis-server"
# Node.js (for the ONNX Runtime peer) may come from elsewhere; only ask apt when it is absent.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
echo "itscam build dependencies are installed"
