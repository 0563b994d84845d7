#!/usr/bin/env bash
# System packages some tests use: Tesseract (OCR engine), DejaVu fonts (rendered-text OCR tests),
# Chromium (the compare page in a real browser), iproute2 + util-linux (the Ray tests' loopback-only
# network namespace). Installed with apt when missing and possible;
# tests that need a missing one skip with the reason.
set -uo pipefail
need=()
command -v tesseract >/dev/null || need+=(tesseract-ocr tesseract-ocr-eng)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v chromium >/dev/null || need+=(chromium)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: missing system packages (${need[*]}); the tests that need them will skip"
  fi
fi
exit 0
