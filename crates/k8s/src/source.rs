//! The source Job: reads a repository at an exact commit for the build worker, inside the build
//! namespace, with the build's own git credentials and network policy, and without running any
//! of the repository's code. It runs the configured BuildKit image (the `rootless` stage of
//! moby/buildkit's `Dockerfile` installs busybox `sh` and `git`) with a fixed script; the URL,
//! commit, sub-directory and wanted files reach the script only as positional parameters.
//! The files come back in the pod's log, one line each (see [`SOURCE_SCRIPT`]).

/// The source container's script. Arguments: the remote URL, the commit, the sub-directory
/// (empty for the root), then the paths of the files wanted, relative to that directory. It
/// prints `slipway-source commit <sha>`, one `slipway-source entry <type> <name>` per entry of
/// the directory, one `slipway-source file <path> <base64>` per wanted file that exists (at most
/// 256 KiB; larger ones get `slipway-source too-large <path> <size>`), and `slipway-source
/// end`. It touches the filesystem only through `$HOME` and `$SLIPWAY_GIT_TOKEN_FILE`. The token
/// goes to git as BuildKit's git source sends it (an `Authorization: Basic` header of
/// `x-access-token:<token>`, moby/buildkit `source/git/source.go`), in the pod's own git config,
/// never on a command line.
pub const SOURCE_SCRIPT: &str = r#"set -eu
url=$1 commit=$2 sub=$3
shift 3
git init -q "$HOME/src"
cd "$HOME/src"
if [ -n "${SLIPWAY_GIT_TOKEN_FILE:-}" ]; then
  auth=$(printf 'x-access-token:%s' "$(cat "$SLIPWAY_GIT_TOKEN_FILE")" | base64 | tr -d '\n')
  git config http.extraHeader "Authorization: Basic $auth"
fi
git fetch -q --depth=1 --no-tags "$url" "$commit"
echo "slipway-source commit $(git rev-parse FETCH_HEAD)"
git ls-tree --format='slipway-source entry %(objecttype) %(path)' "FETCH_HEAD:$sub"
for f in "$@"; do
  obj="FETCH_HEAD:${sub:+$sub/}$f"
  if [ "$(git cat-file -t "$obj" 2>/dev/null || true)" = blob ]; then
    size=$(git cat-file -s "$obj")
    if [ "$size" -le 262144 ]; then
      printf 'slipway-source file %s ' "$f"
      git cat-file blob "$obj" | base64 | tr -d '\n'
      echo
    else
      echo "slipway-source too-large $f $size"
    fi
  fi
done
echo "slipway-source end"
"#;
