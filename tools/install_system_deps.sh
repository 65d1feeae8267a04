#!/usr/bin/env bash
# System packages the project needs: Graphviz (plot_model.py), PortAudio (sounddevice),
# PulseAudio + ALSA plugin (a real capture device for the microphone tests), sox,
# Chromium and its driver (the --serve page's tests drive it headless with Selenium).
# Installed with apt where we are root (or have sudo); otherwise we say what to install.
set -u
PKGS="graphviz libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils
      chromium chromium-driver"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { echo "system packages: all present"; exit 0; }
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "installing system packages:$missing"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null \
      && exit 0
  fi
fi
echo "WARNING: could not install system packages:$missing" >&2
echo "  Install them yourself (Debian/Ubuntu: apt-get install$missing;" >&2
echo "  macOS: brew install graphviz portaudio pulseaudio; brew install --cask chromium" >&2
echo "  chromedriver). Without them plot_model.py, the microphone and the browser tests of" >&2
echo "  --serve are unavailable (those tests skip)." >&2
exit 0
