#!/usr/bin/env bash
# Opens a report.html in headless Chromium (Debian's chromium package) and checks it:
#   - the page loads with no console message (it has no script, so any message is an error:
#     an uncaught exception, a Content-Security-Policy refusal, a failed load);
#   - every figure (the ids of coordinator/src/report/render/html/mod.rs FIGURE_IDS) and the run summary are
#     in the rendered DOM, each figure with an <svg> and a <table>, or, when the run has nothing
#     to show for it (class "omitted"), one line saying why;
#   - a screenshot is written to OUT_PNG.
#
# usage: scripts/check-report-html.sh REPORT_HTML OUT_PNG
# Installs chromium with apt-get when it is missing (needs root).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 REPORT_HTML OUT_PNG" >&2
    exit 2
fi
html="$(realpath "$1")"
out_png="$(realpath -m "$2")"
test -s "$html" || { echo "check-report-html: $html is missing or empty" >&2; exit 1; }

FIGURES=(fig-significance fig-rmse fig-rmse-groups fig-grid fig-identification fig-correlation fig-alignment fig-directions fig-dense fig-semantic run-summary)

chromium_bin="$(command -v chromium || true)"
if [ -z "$chromium_bin" ]; then
    echo "check-report-html: installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
    chromium_bin="$(command -v chromium)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
browse() { # browse NAME ARGS...: one fresh headless browser; stdout and stderr kept under $work
    local name="$1"
    shift
    timeout 120 "$chromium_bin" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$work/profile-$name" --enable-logging=stderr --v=0 \
        "$@" "file://$html" >"$work/$name.out" 2>"$work/$name.err"
}

status=0
browse dom --dump-dom || { echo "check-report-html: chromium --dump-dom failed" >&2; cat "$work/dom.err" >&2; exit 1; }
mkdir -p "$(dirname "$out_png")"
browse shot --hide-scrollbars --window-size=1280,7000 --screenshot="$out_png" || {
    echo "check-report-html: chromium --screenshot failed" >&2
    cat "$work/shot.err" >&2
    exit 1
}
test -s "$out_png" || { echo "check-report-html: no screenshot at $out_png" >&2; exit 1; }

# Console messages: Chromium logs them as CONSOLE lines (INFO:CONSOLE / ERROR:CONSOLE) with the
# page as source; "Uncaught" and CSP "Refused to" cover the forms without that prefix.
if grep -hE 'CONSOLE|Uncaught|Refused to' "$work/dom.err" "$work/shot.err" >"$work/console.txt"; then
    echo "check-report-html: the page logged to the console:" >&2
    cat "$work/console.txt" >&2
    status=1
fi

dom="$work/dom.out"
grep -q '</html>' "$dom" || { echo "check-report-html: no DOM dumped" >&2; exit 1; }
for id in "${FIGURES[@]}"; do
    if ! grep -q "id=\"$id\"" "$dom"; then
        echo "check-report-html: $id is missing from the page" >&2
        status=1
        continue
    fi
    # The element's markup up to its end tag must hold an <svg> (figures) or a <table>.
    part="$(awk -v id="id=\"$id\"" 'BEGIN { RS = "\001" } {
        s = substr($0, index($0, id)); f = index(s, "</figure>"); e = index(s, "</section>")
        if (f > 0 && (e == 0 || f < e)) e = f
        print substr(s, 1, e) }' "$dom")"
    # A figure the run has nothing to show for is one line saying why (class "omitted").
    if grep -q 'class="omitted"' <<<"$part"; then
        grep -q 'Not shown: ' <<<"$part" || { echo "check-report-html: $id is omitted without a reason" >&2; status=1; }
        continue
    fi
    case "$id" in
        fig-*) grep -q '<svg' <<<"$part" || { echo "check-report-html: $id has no <svg>" >&2; status=1; } ;;
    esac
    grep -q '<table' <<<"$part" || { echo "check-report-html: $id has no <table>" >&2; status=1; }
done

if [ "$status" -eq 0 ]; then
    echo "check-report-html: ok: ${#FIGURES[@]} sections, no console messages, screenshot $out_png"
fi
exit "$status"
