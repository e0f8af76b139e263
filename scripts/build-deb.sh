#!/usr/bin/env bash
# Builds the Debian packages from this source tree:
#   dist/m6t_<version>_<arch>.deb          helper (systemd service), m6t CLI, m6t-tray; venv in /opt/m6t
#   dist/m6t-gateway_<version>_<arch>.deb  the gateway daemon (systemd unit, disabled); venv in /opt/m6t-gateway
# Each package carries a self-contained virtual environment built on Debian's own python3.X, so it
# needs nothing from PyPI at install time and nothing from Python packages installed system-wide.
# Run on the Debian release the packages are for (the venv links to its /usr/bin/python3.X and its
# shared libraries).
#
# Needs: dpkg-dev (dpkg-shlibdeps), python3-venv, network access to PyPI, and the shared libraries
# the tray's Qt loads (scripts/setup.sh installs them): dpkg-shlibdeps computes Depends from them.
#
# Usage: scripts/build-deb.sh [--out DIR] [--python /usr/bin/python3.X] [--no-gui]
#   --no-gui  the client package without PySide6 and pyqtgraph (no tray): a quick, small build for
#             tests of the packaging itself; never ship it.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/dist"
python=/usr/bin/python3
gui=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --no-gui) gui=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

die() {
  echo "build-deb.sh: $*" >&2
  exit 1
}

for tool in dpkg-deb dpkg-shlibdeps objdump; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev)"
done

# The installed venv links to this interpreter by path: it must be the target system's own
# (Debian's /usr/bin/python3.X), not a pyenv or /usr/local build that installed systems lack.
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
base_python=/usr/bin/python$pyver
[ -x "$base_python" ] || die "$base_python is missing: build with Debian's python3 (--python /usr/bin/python3.X)"
dpkg-query -W -f='${Status}' "python$pyver" 2>/dev/null | grep -q "install ok installed" ||
  die "python$pyver is not installed from Debian packages"
"$base_python" -c 'import ensurepip, venv' 2>/dev/null || die "the venv module is missing (apt-get install python3-venv)"

arch=$(dpkg --print-architecture)
# PEP 440 pre-releases (1.0rc1, 1.0.dev3) must sort before the release in Debian too: 1.0~rc1.
version=$("$base_python" -c '
import re, sys, tomllib
with open(sys.argv[1], "rb") as f:
    v = tomllib.load(f)["project"]["version"]
print(re.sub(r"\.?(a|b|rc|dev)(\d+)", r"~\1\2", v))
' "$root/pyproject.toml")
maintainer=${M6T_DEB_MAINTAINER:-m6t maintainers <maintainers@m6t.invalid>}

work=$(mktemp -d "${TMPDIR:-/tmp}/m6t-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Build from a copy holding only what the wheel needs: setuptools writes build/ and *.egg-info
# into the tree it builds, and the repository is shared with other work.
mkdir "$work/src"
(cd "$root" && tar --exclude=__pycache__ -cf - pyproject.toml README.md m6t) | tar -C "$work/src" -xf -

echo "== m6t $version ($arch), python$pyver"
"$base_python" -m venv "$work/tool"
pip=("$work/tool/bin/python" -m pip --quiet --disable-pip-version-check)
"${pip[@]}" wheel --no-deps --wheel-dir "$work/wheels" "$work/src"
wheel=$(echo "$work"/wheels/m6t-*.whl)

# A venv at its final path (/opt/NAME) inside the staging root; pip runs from the tool venv against
# its interpreter, so the installed venv holds no pip or setuptools of its own.
make_venv() { # stage venv requirement
  local stage=$1 venv=$2 requirement=$3
  "$base_python" -m venv --without-pip "$stage$venv"
  # Headers for building extensions in place: never used, and lintian flags the empty directory.
  rm -r "$stage$venv/include"
  "${pip[@]}" --python "$stage$venv/bin/python" install --no-compile --no-warn-script-location "$requirement"
  # Where pip found the wheel on this machine: meaningless on the installed system.
  find "$stage$venv" -name direct_url.json -path '*.dist-info/*' -delete
  # Some wheels carry bytecode; postinst compiles all of it on the target (see there).
  find "$stage$venv" -depth -type d -name __pycache__ -exec rm -r {} +
  # Shared objects are mapped, not executed; wheels ship some of them 0755.
  find "$stage$venv" -type f \( -name '*.so' -o -name '*.so.*' \) -exec chmod a-x {} +
  # Console-script shebangs, the activate scripts and pyvenv.cfg name the staging path.
  local files file
  mapfile -d '' files < <(grep -rlF --null "$stage$venv" "$stage$venv" || true)
  for file in "${files[@]}"; do
    grep -Iq . "$file" || die "$file (binary) contains the staging path"
    sed -i "s#$stage$venv#$venv#g" "$file"
  done
  if grep -rqF "$stage" "$stage$venv"; then
    die "the staging path is left in $stage$venv"
  fi
}

# Shared libraries the package needs from Debian, as dpkg-shlibdeps computes them (the
# "shlibs:Depends=" value); the libraries the wheels bundle are found in the given private directories.
shlibs_depends() { # stage file...
  local stage=$1
  shift
  mkdir -p "$work/shlibs/debian"
  printf 'Source: m6t\n\nPackage: m6t\nArchitecture: any\n' >"$work/shlibs/debian/control"
  local private=() dir
  while IFS= read -r -d '' dir; do
    private+=("-l$dir")
  done < <(find "$stage/opt" -name '*.so*' -type f -printf '%h\0' | sort -zu)
  (cd "$work/shlibs" && dpkg-shlibdeps -O --ignore-missing-info "${private[@]}" "$@" 2>"$work/shlibs/log") ||
    { cat "$work/shlibs/log" >&2; die "dpkg-shlibdeps failed (a library above is not installed here)"; }
}

# Python extension modules and the libraries wheels bundle next to them (numpy.libs, ...), but not
# all of Qt: PySide6 ships plugins for GTK themes, Wayland compositors, PDF and more, which Qt loads
# only when present and usable.
python_elf() { # stage
  find "$1/opt" -type f \( -name '*.so' -o -name '*.so.*' \) ! -path '*/PySide6/Qt/*' -print0
}

# What m6t-tray maps at run time (measured from /proc/PID/maps, pyqtgraph included) and the plugins
# an X11 or Wayland-with-XWayland desktop loads.  Wayland's native plugin is a recommendation.
tray_qt_elf() { # stage
  local qt
  qt=$(find "$1/opt" -type d -path '*/PySide6/Qt' -print -quit)
  local lib
  for lib in Core Gui Widgets Svg Network DBus OpenGL OpenGLWidgets Test XcbQpa; do
    printf '%s\0' "$qt/lib/libQt6$lib.so.6"
  done
  find "$qt/plugins" -type f \( -path '*/platforms/libqxcb.so' -o -path '*/xcbglintegrations/*.so' \
    -o -path '*/imageformats/libqsvg.so' -o -path '*/iconengines/libqsvgicon.so' \
    -o -path '*/platforminputcontexts/libcompose*.so' -o -path '*/platforminputcontexts/libibus*.so' \
    -o -path '*/tls/*.so' -o -path '*/platformthemes/libqxdgdesktopportal.so' \) -print0
}

install_common_docs() { # stage package venv
  local stage=$1 package=$2 venv=$3 doc="$1/usr/share/doc/$2"
  mkdir -p "$doc"
  # The copyright of everything in the venv, read from each distribution's own metadata.
  # The repository's LICENSE, once it has one, replaces the generic notice below (which has no years,
  # hence lintian's copyright-without-copyright-notice).
  local license=""
  if [ -f "$root/LICENSE" ]; then
    license="$root/LICENSE"
  fi
  "$stage$venv/bin/python" - "$venv" "$license" >"$doc/copyright" <<'EOF'
import sys
from importlib.metadata import distributions
from pathlib import Path

venv, license_file = sys.argv[1:]
print("m6t: IPv6 reach to a Mobile IPv6 Home Agent from IPv4-only and NATed networks\n")
if license_file:
    print(Path(license_file).read_text(encoding="utf-8"))
else:
    print("""Copyright (c) the m6t authors

License: BSD-2-Clause

 Redistribution and use in source and binary forms, with or without modification, are permitted
 provided that the following conditions are met:
 1. Redistributions of source code must retain the above copyright notice, this list of conditions
    and the following disclaimer.
 2. Redistributions in binary form must reproduce the above copyright notice, this list of
    conditions and the following disclaimer in the documentation and/or other materials provided
    with the distribution.
 THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
 IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND
 FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
 CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
 DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
 DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER
 IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT
 OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
""")
print(f"""Bundled in {venv}, each with its license text in its *.dist-info directory there (on Debian
systems the GNU licenses are also in /usr/share/common-licenses/GPL-2, GPL-3, LGPL-3, and the
Apache license in /usr/share/common-licenses/Apache-2.0):
""")
for dist in sorted(distributions(), key=lambda d: d.metadata["Name"].lower()):
    meta = dist.metadata
    if meta["Name"] == "m6t":
        continue
    license_ = meta.get("License-Expression") or ""
    if not license_:
        classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        license_ = "; ".join(classifiers) or (meta.get("License") or "see its metadata").splitlines()[0]
    print(f" {meta['Name']} {meta['Version']}: {license_}")
EOF
  install -D -m 0644 "$root/installers/linux/debian/$package/lintian-overrides" \
    "$stage/usr/share/lintian/overrides/$package"
  # A one-entry changelog: the packages are built from the source tree, not from a Debian source package.
  local date
  date=$(date -R ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"})
  printf '%s (%s) unstable; urgency=medium\n\n  * Built from the m6t source tree by scripts/build-deb.sh.\n\n -- %s  %s\n' \
    "$package" "$version" "$maintainer" "$date" | gzip -9n >"$doc/changelog.gz"
}

# Manual pages from each command's own --help, so they cannot drift from the code.
install_man_pages() { # stage venv section:command...
  local stage=$1 venv=$2 entry
  shift 2
  for entry in "$@"; do
    local section=${entry%%:*} command=${entry#*:}
    mkdir -p "$stage/usr/share/man/man$section"
    COLUMNS=80 "$stage$venv/bin/python" "$stage$venv/bin/$command" --help |
      "$stage$venv/bin/python" -c '
import sys
command, section, version = sys.argv[1:]
lines = sys.stdin.read().splitlines()
described = [line for line in lines[1:] if line.strip() and not line.startswith(" ")]
summary = described[0].rstrip(".") if described else command
def roff(line: str) -> str:
    line = line.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + line if line.startswith((".", "\x27")) else line
print(f".TH {command.upper()} {section} \"\" \"m6t {version}\" \"m6t\"")
print(".SH NAME")
print(f"{command} \\- {roff(summary)}")
print(".SH SYNOPSIS AND OPTIONS")
print(".nf")
print("\n".join(roff(line) for line in lines))
print(".fi")
print(".SH SEE ALSO")
print("https://datatracker.ietf.org/doc/html/draft-ebalard-mext-m6t-02")
' "$command" "$section" "$version" | gzip -9n >"$stage/usr/share/man/man$section/$command.$section.gz"
  done
}

write_control() { # stage package depends recommends
  local stage=$1 package=$2 depends=$3 recommends=$4 size
  size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
  mkdir -p "$stage/DEBIAN"
  # An empty substitution leaves "Field: " or a trailing comma; both are dropped.
  sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$size|" -e "s|@PYTHON@|python$pyver|" \
    -e "s|@SHLIBS_DEPENDS@|$depends|" -e "s|@SHLIBS_RECOMMENDS@|$recommends|" \
    "$root/installers/linux/debian/$package/control.in" |
    sed -e '/^\(Depends\|Recommends\):/s/, *$//' -e '/^[A-Za-z-]*: *$/d' >"$stage/DEBIAN/control"
  local script
  for script in postinst prerm postrm; do
    install -m 0755 "$root/installers/linux/debian/$package/$script" "$stage/DEBIAN/$script"
  done
  find "$stage" -path "$stage/DEBIAN" -prune -o -type f -printf '%P\0' | sort -z |
    (cd "$stage" && xargs -0r md5sum) >"$stage/DEBIAN/md5sums"
  if [ -d "$stage/etc" ]; then
    find "$stage/etc" -type f -printf '/etc/%P\n' | sort >"$stage/DEBIAN/conffiles"
  fi
}

build_deb() { # stage package
  local stage=$1 package=$2
  # Directories 0755 and files 0644/0755 whatever the umask or the checkout made of them.
  chmod -R u=rwX,go=rX "$stage"
  mkdir -p "$out"
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/${package}_${version}_${arch}.deb" >/dev/null
  echo "   $out/${package}_${version}_${arch}.deb"
}

# -- m6t: helper, CLI, tray --------------------------------------------------------------------------
stage="$work/m6t"
venv=/opt/m6t
requirement=$wheel
if [ "$gui" = 1 ]; then
  requirement="${wheel}[gui]"
fi
echo "== m6t: venv $venv ($([ "$gui" = 1 ] && echo "with the tray" || echo "--no-gui: no tray"))"
make_venv "$stage" "$venv" "$requirement"
mkdir -p "$stage/usr/bin"
for script in m6t m6t-helper m6t-tray; do
  ln -s "$venv/bin/$script" "$stage/usr/bin/$script"
done
install -D -m 0644 "$root/installers/linux/m6t-helper.service" "$stage/lib/systemd/system/m6t-helper.service"
install -D -m 0644 "$root/installers/linux/m6t-tray.desktop" "$stage/usr/share/applications/m6t-tray.desktop"
install -D -m 0644 "$root/installers/linux/m6t-tray-autostart.desktop" "$stage/etc/xdg/autostart/m6t-tray.desktop"
install -D -m 0644 "$root/installers/linux/client.example.toml" "$stage/usr/share/m6t/client.example.toml"
install -D -m 0644 "$root/installers/linux/org.m6t.policy" "$stage/usr/share/polkit-1/actions/org.m6t.policy"
for png in "$root"/assets/png/m6t-*.png; do
  size=${png##*/m6t-}
  size=${size%.png}
  install -D -m 0644 "$png" "$stage/usr/share/icons/hicolor/${size}x${size}/apps/m6t.png"
done
install -D -m 0644 "$root/assets/m6t.svg" "$stage/usr/share/icons/hicolor/scalable/apps/m6t.svg"
install_common_docs "$stage" m6t "$venv"
man_pages=(1:m6t 8:m6t-helper)
if [ "$gui" = 1 ]; then
  man_pages+=(1:m6t-tray)
fi
install_man_pages "$stage" "$venv" "${man_pages[@]}"
mkdir -p "$stage/DEBIAN"
elf=()
while IFS= read -r -d '' f; do elf+=("$f"); done < <(python_elf "$stage")
recommends=""
if [ "$gui" = 1 ]; then
  while IFS= read -r -d '' f; do elf+=("$f"); done < <(tray_qt_elf "$stage")
  recommends="libwayland-client0, libwayland-cursor0, libwayland-egl1"
fi
depends=""
if [ ${#elf[@]} -gt 0 ]; then
  depends=$(shlibs_depends "$stage" "${elf[@]}" | sed -n 's/^shlibs:Depends=//p')
fi
write_control "$stage" m6t "$depends" "$recommends"
build_deb "$stage" m6t

# -- m6t-gateway ---------------------------------------------------------------------------------------
stage="$work/m6t-gateway"
venv=/opt/m6t-gateway
echo "== m6t-gateway: venv $venv"
make_venv "$stage" "$venv" "$wheel"
# The kernel fast lane's binding is Debian's python3-nftables (matched to libnftables, not on PyPI): the
# venv sees that one package through a link, as scripts/setup.sh does; without it the gateway runs and
# says the fast lane is unavailable.
site=$("$stage$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
ln -s /usr/lib/python3/dist-packages/nftables "$site/nftables"
mkdir -p "$stage/usr/bin"
ln -s "$venv/bin/m6t-gateway" "$stage/usr/bin/m6t-gateway"
install -D -m 0644 "$root/installers/linux/m6t-gateway.service" "$stage/lib/systemd/system/m6t-gateway.service"
install -D -m 0644 "$root/installers/linux/gateway.example.toml" "$stage/usr/share/m6t-gateway/gateway.example.toml"
install_common_docs "$stage" m6t-gateway "$venv"
install_man_pages "$stage" "$venv" 8:m6t-gateway
mkdir -p "$stage/DEBIAN"
elf=()
while IFS= read -r -d '' f; do elf+=("$f"); done < <(python_elf "$stage")
depends=""
if [ ${#elf[@]} -gt 0 ]; then
  depends=$(shlibs_depends "$stage" "${elf[@]}" | sed -n 's/^shlibs:Depends=//p')
fi
write_control "$stage" m6t-gateway "$depends" "python3-nftables"
build_deb "$stage" m6t-gateway
