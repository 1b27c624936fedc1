#!/bin/sh
# download-file.sh USER URL FILE_PATH  (AWS-Download-File)
#
# Downloads URL to FILE_PATH for greengrass-jobs-handler. USER is the step's runAsUser (the
# component has already switched to it; it is not used here).
# - URL must be https:// (an S3 presigned URL); plain http:// only to the loopback address
#   (127.0.0.1, ::1, localhost), which exists for local tests.
# - FILE_PATH must be an absolute path inside one of the directories in GGJH_DOWNLOAD_ROOTS
#   (the component's downloadRoots setting, ':'-separated), symlinks included; missing
#   directories below the root are created.
# - The file is written to a temporary file in the same directory and renamed into place, so
#   FILE_PATH is either the old file or the whole new one.
# - Uses curl when present, else wget. An HTTP 403 (an expired or badly signed presigned URL)
#   is reported as such.
# Job input never reaches a shell command line: every value is a quoted argument.
set -u

fail() {
    echo "download-file: $*" >&2
    exit 1
}

[ "$#" -ge 1 ] || fail "usage: download-file.sh USER URL FILE_PATH"
shift
[ "$#" -eq 2 ] || fail "expected URL and FILE_PATH, got $# argument(s)"
url=$1
path=$2

case $url in
    https://?*) ;;
    http://127.0.0.1/* | http://127.0.0.1:[0-9]*/* | http://localhost/* | http://localhost:[0-9]*/* | 'http://[::1]'/* | 'http://[::1]':[0-9]*/*) ;;
    *) fail "refusing URL: only https:// (or http:// to the loopback address) is allowed" ;;
esac
case $url in
    *[[:space:][:cntrl:]]*) fail "refusing URL: it contains spaces or control characters" ;;
esac

case $path in
    /*) ;;
    *) fail "FILE_PATH must be an absolute path, got '$path'" ;;
esac
case $path in
    */ | */. | */.. | */./* | */../* | *[[:cntrl:]]*) fail "FILE_PATH must be a plain file path (no '.', '..' or trailing '/'), got '$path'" ;;
esac

roots=${GGJH_DOWNLOAD_ROOTS:-}
[ -n "$roots" ] || fail "no download directory is allowed on this device (set the component's downloadRoots)"
dir=${path%/*}
[ -n "$dir" ] || dir=/
name=${path##*/}

# The path must lie inside an allowed root, both as written and once symlinks are resolved.
inside=""
old_ifs=$IFS
IFS=:
for root in $roots; do
    IFS=$old_ifs
    [ -n "$root" ] || continue
    case $path in
        "$root"/*)
            mkdir -p -- "$root" "$dir" || fail "cannot create directory '$dir'"
            real_root=$(cd -P -- "$root" && pwd -P) || continue
            real_dir=$(cd -P -- "$dir" && pwd -P) || continue
            case $real_dir/ in
                "$real_root"/*) inside=yes; break ;;
            esac
            ;;
    esac
done
IFS=$old_ifs
[ -n "$inside" ] || fail "FILE_PATH '$path' is outside the allowed download directories ($roots)"
[ ! -d "$path" ] || fail "FILE_PATH '$path' is a directory"

tmp=$(mktemp "$real_dir/.download.XXXXXX") || fail "cannot create a temporary file in '$real_dir'"
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

if command -v curl >/dev/null 2>&1; then
    code=$(curl --silent --show-error --location --proto '=https,http' --proto-redir '=https' \
        --max-redirs 5 --connect-timeout 30 --retry 2 \
        --output "$tmp" --write-out '%{http_code}' --url "$url") || fail "curl could not download the URL"
elif command -v wget >/dev/null 2>&1; then
    headers=$(mktemp "$real_dir/.headers.XXXXXX") || fail "cannot create a temporary file"
    trap 'rm -f -- "$tmp" "$headers"' EXIT
    wget --quiet --server-response --output-document="$tmp" -- "$url" 2>"$headers"
    code=$(awk '$1 ~ /^HTTP\// { c = $2 } END { print c }' "$headers")
    [ -n "$code" ] || fail "wget could not download the URL"
else
    fail "neither curl nor wget is installed"
fi

case $code in
    2??) ;;
    403) fail "HTTP 403 Forbidden: the presigned URL has expired or is not valid; run the job again for a fresh URL" ;;
    404) fail "HTTP 404 Not Found: no such object" ;;
    *) fail "HTTP status $code" ;;
esac

chmod 0644 "$tmp" || fail "cannot set the file mode"
mv -f -- "$tmp" "$real_dir/$name" || fail "cannot move the download into place"
trap - EXIT
size=$(wc -c <"$real_dir/$name" | tr -d ' ')
echo "downloaded $size bytes to $path"
