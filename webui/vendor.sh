#!/usr/bin/env bash
# Re-fetches the console's vendored library files from the npm registry (`npm pack`), unmodified,
# and checks each against webui/assets/vendor/MANIFEST (package@version, path in the tarball, sha256).
#
#   webui/vendor.sh          fetch, copy into webui/assets/vendor/, check the sums
#   webui/vendor.sh --check  fetch into a temporary folder and compare with the committed files
#
# The MANIFEST is the source of truth: to upgrade a library, change its version there, run
# `webui/vendor.sh --update` (which rewrites the sums) and look at the diff.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vendor="$here/assets/vendor"
manifest="$vendor/MANIFEST"
mode="${1:-fetch}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail=0
out="$work/MANIFEST.new"
grep -v '^#' "$manifest" | grep -v '^$' > "$work/entries"
# Keep the comment lines as they are.
grep '^#' "$manifest" > "$out" || true
while read -r file spec inner sum; do
    tgz_dir="$work/pkg/$spec"
    if [ ! -d "$tgz_dir" ]; then
        mkdir -p "$tgz_dir"
        (cd "$tgz_dir" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz)
    fi
    src="$tgz_dir/package/$inner"
    got="$(sha256sum "$src" | cut -d' ' -f1)"
    case "$mode" in
        --update)
            cp "$src" "$vendor/$file"
            sum="$got"
            ;;
        --check)
            if ! cmp -s "$src" "$vendor/$file"; then
                echo "differs from $spec $inner: $file" >&2
                fail=1
            fi
            ;;
        *)
            cp "$src" "$vendor/$file"
            ;;
    esac
    if [ "$got" != "$sum" ]; then
        echo "sha256 mismatch for $file ($spec $inner): manifest $sum, fetched $got" >&2
        fail=1
    fi
    printf '%s %s %s %s\n' "$file" "$spec" "$inner" "$sum" >> "$out"
done < "$work/entries"
if [ "$mode" = "--update" ]; then
    cp "$out" "$manifest"
fi
if [ "$fail" != 0 ]; then
    exit 1
fi
echo "vendored files match $manifest"
