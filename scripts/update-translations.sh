#!/usr/bin/env bash
# Regenerates the translation catalogues from the sources, with the standard tools:
#   the tray: pyside6-lupdate (marks: tr, translate, QT_TRANSLATE_NOOP) → m6t/ui/translations/m6t_<lang>.ts,
#             pyside6-lrelease → m6t_<lang>.qm (shipped as package data);
#   the CLI:  xgettext (marks: _, N_) → m6t/locale/m6t.pot, msgmerge → <lang>/LC_MESSAGES/m6t.po,
#             msgfmt → m6t.mo (shipped as package data).
# Translate the new or changed messages (Qt Linguist: pyside6-linguist; any PO editor), then run it again
# to compile.  tests/ui/test_translations.py and tests/unit/test_cli_translations.py fail when a catalogue
# is behind the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin

mapfile -t tray_sources < <(ls m6t/ui/*.py)
for ts in m6t/ui/translations/m6t_*.ts; do
  "$bin/pyside6-lupdate" -no-obsolete -locations none "${tray_sources[@]}" -ts "$ts"
  "$bin/pyside6-lrelease" -silent "$ts" -qm "${ts%.ts}.qm"
done

if [ -d m6t/locale ]; then
  xgettext --language=Python --keyword=_ --keyword=N_ --keyword=ngettext:1,2 --from-code=UTF-8 --no-location --sort-output \
    --package-name=m6t --msgid-bugs-address=https://github.com/m6t/m6t/issues \
    --output=m6t/locale/m6t.pot m6t/client/cli.py
  for po in m6t/locale/*/LC_MESSAGES/m6t.po; do
    msgmerge --quiet --update --backup=none --no-fuzzy-matching --no-location --sort-output "$po" m6t/locale/m6t.pot
    msgfmt --check --output-file="${po%.po}.mo" "$po"
  done
fi
