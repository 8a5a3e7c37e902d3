#!/bin/sh
# setup-node.sh: make this machine a BYSU node. Run it as root on the node,
# with BYSU's public key and the commands this node may run; `--help` says how
# and what it does. Idempotent: run again with the same arguments it changes
# nothing; with others it changes what differs. Each step says what it did.
#
# POSIX sh (dash, Debian's /bin/sh) and the tools of a Debian base system:
# useradd, usermod, getent, install, stat, cmp, mktemp, awk, setpriv
# (util-linux), and ssh-keygen (installed with openssh-server) when present.
set -eu
umask 022

PROG=setup-node
WRAPPER_TARGET=/usr/local/lib/bysu/bysu-allow
ETC_DIR=/etc/bysu
LIST_TARGET=$ETC_DIR/allowed-commands
DEFAULT_USER=bysu
# The forced command of BYSU's key, and what marks BYSU's line in authorized_keys.
FORCED_COMMAND="$WRAPPER_TARGET $LIST_TARGET"
MARKER="command=\"$WRAPPER_TARGET "
KEY_TYPES='ssh-ed25519 ssh-rsa ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 ecdsa-sha2-nistp521 sk-ssh-ed25519@openssh.com sk-ecdsa-sha2-nistp256@openssh.com'

usage() {
  cat <<EOF
Usage: sh setup-node.sh --key-file FILE [--allow-list FILE] [--allow COMMAND]... [--user NAME]

Make this machine a BYSU node: a login user for BYSU's SSH key, restricted by
authorized_keys to the forced command bysu-allow, which runs only the commands
of the allow-list. Run as root, on the node, in the directory where you copied
this script and bysu-allow.

Options:
  --key-file FILE     BYSU's public key: the .pub beside the backup server's
                      ssh.identityFile (e.g. /etc/bysu/id_ed25519.pub)
  --key 'LINE'        the same, given as the line itself ('ssh-ed25519 AAAA… comment')
  --allow-list FILE   the commands this node may run, one per line, exactly as
                      'bysu config allow-list NODE' prints them on the backup
                      server (- reads standard input); it replaces
                      $LIST_TARGET
  --allow COMMAND     one more command, exactly as a part's run: in bysu.yaml;
                      may be repeated; added after --allow-list's lines
  --user NAME         the user BYSU logs in as (default: $DEFAULT_USER): the node's
                      user: in bysu.yaml, else ssh.user
  --wrapper FILE      the bysu-allow to install (default: bysu-allow beside this script)
  -h, --help          this text

Without --allow-list or --allow an existing $LIST_TARGET is kept.

What it does, each step only when needed, in this order (everything is checked
before the first change):
  1. The user. A user that does not exist is created: a system user with shell
     /bin/sh, home /home/NAME and no password (password field '*': key logins
     only; useradd's own '!' would lock it for sshd without PAM). A user that
     exists is reused only when it can run commands: its shell is not nologin
     or false and runs a command, its password field does not start with '!'
     (locked) and the account has not expired. Otherwise it is refused, saying
     what to do (Debian's own 'backup' user has shell /usr/sbin/nologin: keep
     the default user $DEFAULT_USER for BYSU).
  2. bysu-allow installed as $WRAPPER_TARGET (root, 0755).
  3. $ETC_DIR created (root, 0755) and $LIST_TARGET written (root, 0644).
     Every command line is checked first: bysu-allow refuses any command that
     holds a control character (tab, carriage return…), so such a line is
     refused here.
  4. The home (0700 when it has to be made) and ~/.ssh (0700) owned by the user,
     and in ~/.ssh/authorized_keys (0600) one line for the key:
       restrict,command="$FORCED_COMMAND" <key>
     A line BYSU wrote before (any line whose forced command is $WRAPPER_TARGET)
     is replaced; every other line is kept. The key in another line (without the
     forced command) is refused: sshd would use that line instead.

Exit status: 0 done (or nothing to change), 1 refused or failed (the message
says why and what to do; the steps before it stay done), 2 usage error.

Example (node db1; the files copied from the backup server):
  sh setup-node.sh --key-file id_ed25519.pub --allow-list db1.allowed-commands
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }

# counted N [NOUN]: "1 command" or "N commands" (or of NOUN).
counted() { if [ "$1" -eq 1 ]; then echo "1 ${2:-command}"; else echo "$1 ${2:-command}s"; fi; }

# fail WHAT [WHAT TO DO]: exit 1 with a message.
fail() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  [ $# -lt 2 ] || printf '%s: %s\n' "$PROG" "$2" >&2
  exit 1
}

usage_error() {
  printf '%s: %s\n' "$PROG" "$1" >&2
  printf '%s\n' '(run sh setup-node.sh --help for usage)' >&2
  exit 2
}

# Every control character but NUL (which no shell string can hold); DEL last, so
# that the command substitution strips nothing.
CONTROLS=$(printf '\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020\021\022\023\024\025\026\027\030\031\032\033\034\035\036\037\177')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
: >"$work/allow"

user=$DEFAULT_USER
key_line=
key_file=
list_file=
wrapper_source=
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --user | --key | --key-file | --allow-list | --allow | --wrapper)
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      option=$1
      value=$2
      shift 2 ;;
    --user=* | --key=* | --key-file=* | --allow-list=* | --allow=* | --wrapper=*)
      option=${1%%=*}
      value=${1#*=}
      shift ;;
    -*) usage_error "unknown option $1" ;;
    *) usage_error "unexpected argument '$1': every value follows its option (--key-file FILE, --allow-list FILE, --allow 'COMMAND')" ;;
  esac
  case $option in
    --user) user=$value ;;
    --key) key_line=$value ;;
    --key-file) key_file=$value ;;
    --allow-list) list_file=$value ;;
    --wrapper) wrapper_source=$value ;;
    --allow)
      # A newline would make two lines of the list out of one command.
      case $value in
        *["$CONTROLS"]*) fail "the --allow command '$(printf '%s' "$value" | LC_ALL=C tr -c ' -~' '?')' holds a control character (a newline, a tab or other): bysu-allow refuses every command holding one, so it could never run" \
          'write each command on one line without control characters (a longer one: a script on the node, and its path in the list)' ;;
      esac
      printf '%s\n' "$value" >>"$work/allow" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || fail "run it as root: it creates a user and writes $ETC_DIR, /usr/local/lib/bysu and the user's ~/.ssh" \
  "sudo sh $0 …"

# --- Check everything before changing anything ----------------------------------------

# The key.
[ -z "$key_line" ] || [ -z "$key_file" ] || usage_error 'give --key or --key-file, not both'
if [ -n "$key_file" ]; then
  { [ -f "$key_file" ] && [ -r "$key_file" ]; } || fail "cannot read the key file $key_file" \
    "copy BYSU's public key here: the .pub beside ssh.identityFile on the backup server (e.g. /etc/bysu/id_ed25519.pub)"
  key_line=$(grep -v -e '^[[:space:]]*$' -e '^[[:space:]]*#' "$key_file" || true)
  key_from=$key_file
else
  key_from='--key'
fi
[ -n "$key_line" ] || usage_error "no key: give --key-file FILE (BYSU's public key, the .pub of ssh.identityFile on the backup server)"
case $key_line in
  *'PRIVATE KEY'*) fail "$key_from is a private key" "give its public half (the .pub file), and remove the private key from this node: it belongs only on the backup server" ;;
esac
[ "$(printf '%s\n' "$key_line" | wc -l)" -eq 1 ] || fail "$key_from holds more than one key" "give exactly one: BYSU's public key"
case $key_line in
  *["$CONTROLS"]*) fail "$key_from holds a control character (tab, carriage return or other)" "give the .pub file's line as ssh-keygen wrote it" ;;
esac
set -f
# shellcheck disable=SC2086 # split into type, key and comment
set -- $key_line
set +f
key_type=$1
key_blob=${2-}
shift
[ $# -eq 0 ] || shift
key_comment=$*
case " $KEY_TYPES " in
  *" $key_type "*) ;;
  *) fail "$key_from does not start with a key type ($KEY_TYPES), but with '$key_type'" \
       'give the line of the .pub file as it is, without options such as restrict or command=' ;;
esac
case $key_blob in
  '' | *[!A-Za-z0-9+/=]*) fail "$key_from: the key after $key_type is missing or not base64" "give the line of the .pub file as it is" ;;
esac
printf '%s %s %s\n' "$key_type" "$key_blob" "$key_comment" >"$work/key.pub"
# fingerprint FILE: the SHA256 fingerprint of the (first) key in FILE, or the end of its base64.
fingerprint() {
  if command -v ssh-keygen >/dev/null 2>&1; then
    ssh-keygen -l -E sha256 -f "$1" 2>/dev/null | awk 'NR == 1 { print $2 }'
  else
    awk '{ for (i = 1; i < NF; i++) if ($i ~ /^(ssh-|ecdsa-|sk-)/) { print "key …" substr($(i + 1), length($(i + 1)) - 11); exit } }' "$1"
  fi
}
if command -v ssh-keygen >/dev/null 2>&1; then
  ssh-keygen -l -f "$work/key.pub" >/dev/null 2>&1 || fail "$key_from: ssh-keygen cannot read the key" "give the line of the .pub file as it is"
fi
key_fingerprint=$(fingerprint "$work/key.pub")
key_entry="restrict,command=\"$FORCED_COMMAND\" $key_type $key_blob${key_comment:+ $key_comment}"

# The allow-list.
# check_list FILE NAME: exit 1 naming each line bysu-allow could never run;
# else print the number of commands (the lines that are not blank or comments).
check_list() {
  if [ "$(LC_ALL=C tr -d '\000' <"$1" | wc -c)" -ne "$(wc -c <"$1")" ]; then
    fail "$2 holds a NUL byte" 'write it as plain text, one command per line (bysu config allow-list NODE prints it)'
  fi
  LC_ALL=C awk -v name="$2" '
    { line = $0; sub(/^[ \t]+/, "", line) }
    line == "" || substr(line, 1, 1) == "#" { next }
    /\r$/ { crlf++; if (!first_crlf) first_crlf = NR; next }
    /[[:cntrl:]]/ { bad++; if (!first_bad) first_bad = NR; next }
    { commands++ }
    function lines(count, first, one, many) { return count == 1 ? "line " first " " one : count " lines (the first: line " first ") " many }
    END {
      if (crlf) {
        printf "%s: %s in a carriage return (CRLF line ends): bysu-allow would never match it\n", name, lines(crlf, first_crlf, "ends", "end") > "/dev/stderr"
        printf "strip them: sed -i \"s/\\r\\$//\" %s\n", name > "/dev/stderr"
        exit 3
      }
      if (bad) {
        printf "%s: %s a control character (a tab or other): bysu-allow refuses every command holding one, so it could never run\n", name, lines(bad, first_bad, "holds", "hold") > "/dev/stderr"
        printf "write each command on one line without control characters (a longer one: a script on the node, and its path in the list)\n" > "/dev/stderr"
        exit 3
      }
      print commands + 0
    }' "$1" >"$work/count" 2>"$work/problem" || {
      printf '%s: error: %s\n' "$PROG" "$(sed -n 1p "$work/problem")" >&2
      printf '%s: %s\n' "$PROG" "$(sed -n 2p "$work/problem")" >&2
      exit 1
    }
  cat "$work/count"
}

if [ -n "$list_file" ]; then
  if [ "$list_file" = - ]; then
    cat >"$work/list.given"
    list_name='the allow-list on standard input'
  else
    { [ -f "$list_file" ] && [ -r "$list_file" ]; } || fail "cannot read the allow-list $list_file" \
      "on the backup server, bysu config allow-list NODE > NODE.allowed-commands writes it; copy it here"
    cat -- "$list_file" >"$work/list.given"
    list_name=$list_file
  fi
  # A last line without a newline after it gets one.
  if [ -s "$work/list.given" ] && [ "$(tail -c 1 "$work/list.given" | od -An -c | tr -d ' ')" != '\n' ]; then
    echo >>"$work/list.given"
  fi
  check_list "$work/list.given" "$list_name" >/dev/null
  cat "$work/list.given" >"$work/list.new"
fi
[ ! -s "$work/allow" ] || cat "$work/allow" >>"$work/list.new"
if [ -f "$work/list.new" ]; then
  commands=$(check_list "$work/list.new" "the allow-list")
  [ "$commands" -gt 0 ] || fail "${list_name:-the allow-list} has no commands (only blank lines or # comments)" \
    "on the backup server, bysu config allow-list NODE prints the commands of the apps on NODE"
elif [ -f "$LIST_TARGET" ]; then
  commands=$(check_list "$LIST_TARGET" "$LIST_TARGET")
else
  usage_error "no allow-list: give --allow-list FILE (on the backup server, bysu config allow-list NODE prints it) or --allow COMMAND"
fi

# The wrapper.
[ -n "$wrapper_source" ] || wrapper_source=$(dirname -- "$0")/bysu-allow
{ [ -f "$wrapper_source" ] && [ -r "$wrapper_source" ]; } || fail "cannot read bysu-allow at $wrapper_source" \
  "copy contrib/node/bysu-allow beside this script, or name it with --wrapper FILE"
[ "$(head -c 2 "$wrapper_source")" = '#!' ] || fail "$wrapper_source is not a script (no #! line)" "give contrib/node/bysu-allow as shipped"

# The user.
case $user in
  '' | [-.]* | *[!A-Za-z0-9_.-]*) usage_error "--user '$user' is not a user name (letters, digits, _ . -, not starting with - or .)" ;;
esac
entry=$(getent passwd "$user" | sed -n 1p || true)
if [ -n "$entry" ]; then
  user_exists=yes
  IFS=: read -r _ _ uid gid _ home shell <<EOF
$entry
EOF
  login_shell=${shell:-/bin/sh}
  # refuse_user WHAT FIX: exit 1, saying what to do: the dedicated user first, unless it is the one refused.
  refuse_user() {
    if [ "$user" = "$DEFAULT_USER" ]; then
      fail "user $user exists but $1" "$2; or name another user with --user"
    else
      fail "user $user exists but $1" "leave --user out: this script then makes a dedicated user $DEFAULT_USER (set user: $DEFAULT_USER for this node in bysu.yaml, or ssh.user); or $2"
    fi
  }
  case ${login_shell##*/} in
    nologin | false)
      refuse_user "cannot run commands: its shell is $login_shell, and sshd runs every command through the user's shell" \
        "give it a shell, usermod -s /bin/sh $user, only if nothing relies on $user not logging in" ;;
  esac
  { [ -f "$login_shell" ] && [ -x "$login_shell" ]; } || refuse_user "cannot run commands: its shell $login_shell does not exist or is not executable" \
    "give it a shell: usermod -s /bin/sh $user"
  shadow=$(getent shadow "$user" 2>/dev/null | sed -n 1p || true)
  password=$(printf '%s\n' "$shadow" | cut -d: -f2)
  expires=$(printf '%s\n' "$shadow" | cut -d: -f8)
  case $password in
    '!'*) refuse_user "is locked (its password field starts with !, from passwd -l or useradd's default), and sshd without PAM refuses key logins to a locked account" \
      "allow key logins, still with no password: usermod -p '*' $user" ;;
  esac
  if [ -n "$expires" ] && [ "$expires" -le $(($(date +%s) / 86400)) ]; then
    refuse_user "its account has expired (chage -l $user shows when)" "remove the expiry date: usermod -e '' $user"
  fi
  if command -v setpriv >/dev/null 2>&1; then
    # From /, which every user may enter: some shells complain of a working directory they cannot read.
    said=$(cd / && setpriv --reuid="$uid" --regid="$gid" --init-groups -- env -i PATH=/usr/bin:/bin "$login_shell" -c '/bin/echo bysu-can-run' 2>"$work/shell-said" </dev/null || true)
    [ "$said" = bysu-can-run ] || refuse_user "its shell $login_shell does not run a command: it answered '$(LC_ALL=C tr -c ' -~\n' '?' <"$work/shell-said" | head -n 1)$said'" \
      "give it a shell that runs sh -c commands: usermod -s /bin/sh $user"
  fi
  case $home in
    /nonexistent* | '' | /) refuse_user "has no home for ~/.ssh (its home is '$home')" "give it one: usermod -d /home/$user $user" ;;
    /*) ;;
    *) fail "user $user's home '$home' is not an absolute path" "give it one: usermod -d /home/$user $user" ;;
  esac
  if [ -e "$home" ]; then
    [ -d "$home" ] || fail "user $user's home $home is not a directory" "give it a home directory: usermod -d /home/$user $user"
    set -- $(stat -L -c '%u %a' "$home")
    { [ "$1" = "$uid" ] || [ "$1" = 0 ]; } || fail "sshd ignores ~/.ssh/authorized_keys under a home owned by another user: $home belongs to uid $1" "chown $user $home"
    case $2 in
      *[2367]? | *[2367]) fail "sshd ignores ~/.ssh/authorized_keys under a home that others may write to: $home has mode $2" "chmod go-w $home" ;;
    esac
  fi
  reuse_note="exists and can run commands (shell $login_shell): reused"
else
  user_exists=no
  home=/home/$user
  case $user in
    [a-z_]*) ;;
    *) usage_error "--user '$user': a new user's name starts with a lower-case letter or _" ;;
  esac
  { [ ! -e "$home" ] && [ ! -L "$home" ]; } || fail "$home exists, but no user $user does (left by an earlier user?)" \
    "move it away, or create user $user with that home yourself, then run this again"
fi

# authorized_keys: the key must not be there without the forced command.
ssh_dir=$home/.ssh
keys_file=$ssh_dir/authorized_keys
: >"$work/keys.old"
if [ -L "$ssh_dir" ] || { [ -e "$ssh_dir" ] && [ ! -d "$ssh_dir" ]; }; then
  fail "$ssh_dir is not a directory (or is a symbolic link)" "move it away, then run this again"
fi
if [ -L "$keys_file" ] || { [ -e "$keys_file" ] && [ ! -f "$keys_file" ]; }; then
  fail "$keys_file is not a regular file (or is a symbolic link)" "move it away, then run this again"
fi
[ ! -f "$keys_file" ] || cat -- "$keys_file" >"$work/keys.old"
others=$(BLOB=$key_blob MARKER=$MARKER awk '
  index($0, ENVIRON["MARKER"]) { next }
  { for (i = 1; i <= NF; i++) if ($i == ENVIRON["BLOB"]) { printf "%s%d", sep, NR; sep = ", "; break } }' "$work/keys.old")
[ -z "$others" ] || fail "$keys_file already has this key without BYSU's forced command (line $others); sshd would use that line and let the key run anything" \
  "remove that line (the key is BYSU's: give it no other use), then run this again"

# --- Change what differs ----------------------------------------------------------------

# 1. The user.
if [ "$user_exists" = no ]; then
  if getent group "$user" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "$home" --shell /bin/sh --comment 'BYSU backups' --gid "$user" "$user" ||
      fail "useradd could not create user $user (its message is above)"
    group_note=", existing group $user"
  else
    useradd --system --create-home --home-dir "$home" --shell /bin/sh --comment 'BYSU backups' --user-group "$user" ||
      fail "useradd could not create user $user (its message is above)"
    group_note=
  fi
  usermod --password '*' "$user" || fail "usermod could not set user $user's password field to * (key logins only)"
  IFS=: read -r _ _ uid gid _ _ _ <<EOF
$(getent passwd "$user" | sed -n 1p)
EOF
  say "user $user: created (system user, uid $uid$group_note, shell /bin/sh, home $home, no password: key logins only)"
else
  say "user $user: $reuse_note"
fi

# 2. The wrapper.
if [ -f "$WRAPPER_TARGET" ] && cmp -s "$wrapper_source" "$WRAPPER_TARGET"; then
  done_wrapper=unchanged
elif [ -e "$WRAPPER_TARGET" ]; then
  done_wrapper=updated
else
  done_wrapper=installed
fi
if [ "$done_wrapper" != unchanged ] || [ "$(stat -c '%u %a' "$WRAPPER_TARGET")" != '0 755' ]; then
  install -D -m 0755 -o root -g root "$wrapper_source" "$WRAPPER_TARGET"
  [ "$done_wrapper" != unchanged ] || done_wrapper='owner and mode set to root, 0755'
fi
say "$WRAPPER_TARGET: $done_wrapper"

# 3. /etc/bysu and the allow-list.
if [ ! -d "$ETC_DIR" ]; then
  install -d -m 0755 -o root -g root "$ETC_DIR"
  say "$ETC_DIR: created"
fi
if [ -f "$work/list.new" ]; then
  if [ -f "$LIST_TARGET" ] && cmp -s "$work/list.new" "$LIST_TARGET"; then
    done_list="unchanged ($(counted "$commands"))"
  else
    [ -e "$LIST_TARGET" ] && done_list="replaced ($(counted "$commands"))" || done_list="written ($(counted "$commands"))"
    tmp=$(mktemp "$ETC_DIR/.allowed-commands.XXXXXX")
    cat "$work/list.new" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$LIST_TARGET"
  fi
else
  done_list="kept ($(counted "$commands"))"
fi
if [ "$(stat -c '%u %a' "$LIST_TARGET")" != '0 644' ]; then
  chown root:root "$LIST_TARGET"
  chmod 0644 "$LIST_TARGET"
  done_list="$done_list, owner and mode set to root, 0644"
fi
say "$LIST_TARGET: $done_list"
if command -v setpriv >/dev/null 2>&1; then
  setpriv --reuid="$uid" --regid="$gid" --init-groups -- /bin/sh -c 'test -r "$1" && test -x "$2"' sh "$LIST_TARGET" "$WRAPPER_TARGET" ||
    fail "user $user cannot read $LIST_TARGET or run $WRAPPER_TARGET" \
      "each directory on the way needs search permission for it (ls -ld $ETC_DIR /usr/local/lib/bysu; chmod o+x to mend)"
fi

# 4. The home, ~/.ssh and authorized_keys.
if [ ! -d "$home" ]; then
  install -d -m 0700 -o "$uid" -g "$gid" "$home"
  say "$home: created (mode 0700, owner $user)"
fi
if [ ! -d "$ssh_dir" ]; then
  install -d -m 0700 -o "$uid" -g "$gid" "$ssh_dir"
  say "$ssh_dir: created (mode 0700, owner $user)"
else
  was=$(stat -c '%u:%g %a' "$ssh_dir")
  if [ "$was" != "$uid:$gid 700" ]; then
    chown -h "$uid:$gid" "$ssh_dir"
    chmod 0700 "$ssh_dir"
    say "$ssh_dir: owner and mode set to $user, 0700 (were uid:gid mode $was)"
  fi
fi

NEW_ENTRY=$key_entry MARKER=$MARKER awk '
  index($0, ENVIRON["MARKER"]) { if (!written) print ENVIRON["NEW_ENTRY"]; written = 1; next }
  { print }
  END { if (!written) print ENVIRON["NEW_ENTRY"] }' "$work/keys.old" >"$work/keys.new"
grep -F -- "$MARKER" "$work/keys.old" >"$work/keys.bysu" || true
bysu_lines=$(wc -l <"$work/keys.bysu")
other_lines=$(($(wc -l <"$work/keys.new") - 1))
kept=
[ "$other_lines" -eq 0 ] || kept="; $(counted "$other_lines" 'other line') kept"
if [ "$bysu_lines" -eq 0 ]; then
  done_keys="BYSU's key added ($key_fingerprint)$kept"
else
  old_fingerprint=$(fingerprint "$work/keys.bysu")
  if [ "$old_fingerprint" != "$key_fingerprint" ]; then
    done_keys="BYSU's key replaced: $old_fingerprint -> $key_fingerprint$kept"
  elif ! grep -qxF -- "$key_entry" "$work/keys.bysu"; then
    done_keys="BYSU's line rewritten, same key ($key_fingerprint)$kept"
  else
    done_keys="BYSU's key unchanged ($key_fingerprint)$kept"
  fi
  [ "$bysu_lines" -eq 1 ] || done_keys="$done_keys; $(counted $((bysu_lines - 1)) 'more BYSU line') removed"
fi
if [ -f "$keys_file" ] && cmp -s "$work/keys.new" "$work/keys.old"; then
  :
else
  # Written beside it and renamed over it: a reader never sees half a file, and a
  # symbolic link put in its place is replaced, not followed.
  tmp=$(mktemp "$ssh_dir/.authorized_keys.XXXXXX")
  cat "$work/keys.new" >"$tmp"
  mv -f "$tmp" "$keys_file"
  chown -h "$uid:$gid" "$keys_file"
fi
if [ "$(stat -c '%u %a' "$keys_file")" != "$uid 600" ]; then
  chown -h "$uid:$gid" "$keys_file"
  chmod 0600 "$keys_file"
  done_keys="$done_keys; owner and mode set to $user, 0600"
fi
say "$keys_file: $done_keys"

say "done: $user may log in with key $key_fingerprint and run only the $(counted "$commands") of $LIST_TARGET"
say "next, on the backup server: pin this node's host key (bysu keyscan HOST prints it for hostKey:), then bysu config check --connect"
