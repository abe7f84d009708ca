#!/usr/bin/env bash
# lint.sh - the house source checker (`make lint`, part of `make test`).
#
# Checks every C file under src/ (or under the directories given as
# arguments, for testing the checker itself) for the rules of DESIGN.md
# that a compiler does not enforce:
#   1. banned calls: strcpy strcat sprintf vsprintf gets atoi atol strtok
#      system popen (as calls, in code: comments and string literals are
#      ignored; snprintf, vsnprintf, fgets, strtok_r ... are allowed);
#   2. no SQL outside src/store/: a string literal that starts with
#      SELECT, INSERT INTO, UPDATE, DELETE FROM, CREATE TABLE/INDEX, or
#      that holds "SELECT ... FROM";
#   3. no string-built SQL inside src/store/: a snprintf/vsnprintf/
#      asprintf/sqlite3_mprintf whose format holds SELECT/INSERT/UPDATE/
#      DELETE;
#   4. every .c file opens with a /* comment (what it owns, what it must
#      never do);
#   5. layering (docs/architecture.md): which folder may include which.
#      The path after the last "src/" decides the folder, so a test can
#      lay out a tree under a temp dir:
#        - src/connectors/ includes no src/store/ or src/vault/ header,
#          nor core/wharf.h or a src/security/ header (a connector gets
#          what it needs through connector.h and env.h: alerts too);
#        - <curl/curl.h> only in src/net/ (one outbound client, one TLS
#          and proxy policy);
#        - src/api/ and src/cli/ include no connector type's header: of
#          src/connectors/ only connector.h (types are reached through
#          their tables: options, actions);
#        - src/util/ includes only src/util/;
#        - src/store/ includes nothing of api/, cli/, connectors/, net/.
#      KNOWN_EXCEPTIONS below would list files that break a rule while
#      their fix belongs to another task; it is empty.
# Prints one `file:line: problem` per finding and exits 1, or prints
# `lint: ok`. Plain perl over the files: well under a second.
set -u
cd "$(dirname "$0")/.." || exit 2

roots=("$@")
[ ${#roots[@]} -gt 0 ] || roots=(src)
mapfile -t files < <(find "${roots[@]}" -type f \( -name '*.c' -o -name '*.h' \) | sort)
if [ ${#files[@]} -eq 0 ]; then
    echo "lint: no C files under ${roots[*]}" >&2
    exit 2
fi

perl -e '
use strict;
use warnings;

# file (its path from "src/") => rule names it may break, and why. Empty:
# the connector environment (connectors/env.h) and the one transport
# (net/client.h) ended the last ones; keep it empty.
my %KNOWN_EXCEPTIONS = (
);

my $BANNED = qr/\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|system|popen)\s*\(/;
my $SQL_START = qr/^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\b|UPDATE\s|DELETE\s+FROM\s|CREATE\s+(UNIQUE\s+)?(TABLE|INDEX)\s|DROP\s+(TABLE|INDEX)\s|ALTER\s+TABLE\s|PRAGMA\s)/;
my $SQL_ANY = qr/\bSELECT\b.*\bFROM\b|\bINSERT\s+INTO\b|\bDELETE\s+FROM\b/;
my $SQL_WORD = qr/\b(SELECT|INSERT|UPDATE|DELETE)\b/;
my $FMT_CALL = qr/\b(snprintf|vsnprintf|asprintf|vasprintf|sqlite3_mprintf|sqlite3_snprintf|sqlite3_vmprintf|dprintf)\s*\(/;
my $problems = 0;

sub report { my ($f, $l, $msg) = @_; print "$f:$l: $msg\n"; $problems++; }

# Split C source into code (comments and literals blanked, newlines kept)
# and a list of string literals [line, text] (escapes kept as written).
sub scan {
    my ($src) = @_;
    my $code = "";
    my @lits;
    my $line = 1;
    my $n = length $src;
    my $i = 0;
    while ($i < $n) {
        my $c = substr($src, $i, 1);
        my $d = $i + 1 < $n ? substr($src, $i + 1, 1) : "";
        if ($c eq "/" && $d eq "*") {
            my $e = index($src, "*/", $i + 2);
            $e = $e < 0 ? $n : $e + 2;
            my $t = substr($src, $i, $e - $i);
            (my $blank = $t) =~ s/[^\n]/ /g;
            $code .= $blank;
            $line += ($t =~ tr/\n//);
            $i = $e;
        } elsif ($c eq "/" && $d eq "/") {
            my $e = index($src, "\n", $i);
            $e = $n if $e < 0;
            $code .= " " x ($e - $i);
            $i = $e;
        } elsif ($c eq "\"" || $c eq "\x27") {
            my $j = $i + 1;
            while ($j < $n) {
                my $x = substr($src, $j, 1);
                if ($x eq "\\") { $j += 2; next; }
                last if $x eq $c || $x eq "\n";
                $j++;
            }
            my $body = substr($src, $i + 1, $j - $i - 1);
            push @lits, [$line, $body, length($code)] if $c eq "\"";
            $code .= $c . (" " x length $body) . $c;
            $i = $j + 1;
        } else {
            $line++ if $c eq "\n";
            $code .= $c;
            $i++;
        }
    }
    return ($code, \@lits);
}

sub line_of { my ($text, $pos) = @_; return 1 + (substr($text, 0, $pos) =~ tr/\n//); }

for my $f (@ARGV) {
    open(my $fh, "<", $f) or do { report($f, 0, "cannot read: $!"); next; };
    local $/;
    my $src = <$fh>;
    close $fh;
    my ($code, $lits) = scan($src);
    my $in_store = $f =~ m{(^|/)src/store/};

    # 4. the opening comment
    if ($f =~ /\.c$/ && $src !~ m{\A/\*}) {
        report($f, 1, "a .c file must open with a /* comment saying what it owns and must never do");
    }

    # 5. layering
    (my $rel = $f) =~ s{^.*?(?:^|/)(src/[^/]+/.*)$}{$1};
    my ($dir) = $rel =~ m{^src/([^/]+)/};
    my $except = $KNOWN_EXCEPTIONS{$rel} // "";
    my $iln = 0;
    for my $l (split /\n/, $src, -1) {
        $iln++;
        next unless $l =~ /^\s*#\s*include\s*([<"])([^">]+)[">]/;
        my ($q, $inc) = ($1, $2);
        my ($idir) = $q eq "\"" ? $inc =~ m{^([^/]+)/} : (undef);
        if (defined $dir && $dir eq "connectors" && defined $idir &&
            ($idir eq "store" || $idir eq "vault")) {
            report($f, $iln, "layering: src/connectors/ may not include $inc (reach the store and the vault through connector.h)")
                if $except ne "connectors-store";
        }
        if (defined $dir && $dir eq "connectors" &&
            ($inc eq "core/wharf.h" ||
             (defined $idir && $idir eq "security"))) {
            report($f, $iln, "layering: src/connectors/ may not include $inc (the process and its alerts are reached through connectors/env.h)");
        }
        if ($inc eq "curl/curl.h" && !(defined $dir && $dir eq "net") &&
            $except ne "curl") {
            report($f, $iln, "layering: <curl/curl.h> only in src/net/ (use net/client.h)");
        }
        if (defined $dir && ($dir eq "api" || $dir eq "cli") &&
            defined $idir && $idir eq "connectors" &&
            $inc ne "connectors/connector.h") {
            report($f, $iln, "layering: src/$dir/ may not include $inc (reach connector types through connectors/connector.h: options, actions)");
        }
        if (defined $dir && $dir eq "util" && defined $idir &&
            $idir ne "util") {
            report($f, $iln, "layering: src/util/ includes only util/ headers, not $inc");
        }
        if (defined $dir && $dir eq "store" && defined $idir &&
            $idir =~ /^(api|cli|connectors|net)$/) {
            report($f, $iln, "layering: src/store/ may not include $inc");
        }
    }

    # 1. banned calls (code only)
    my $ln = 0;
    for my $l (split /\n/, $code, -1) {
        $ln++;
        while ($l =~ /$BANNED/g) {
            my $name = $1;
            my $pre = substr($l, 0, $-[0]);
            next if $pre =~ /(\.|->)\s*$/;     # a struct member, not the libc call
            report($f, $ln, "banned call $name() (use the bounded/safe alternative)");
        }
    }

    # 2. SQL outside src/store/
    if (!$in_store) {
        for my $lit (@$lits) {
            my ($l, $t) = @$lit;
            if ($t =~ $SQL_START || $t =~ $SQL_ANY) {
                report($f, $l, "SQL outside src/store/: \"" . substr($t, 0, 40) . "\"");
            }
        }
    }

    # 3. string-built SQL in src/store/
    if ($in_store) {
        while ($code =~ /$FMT_CALL/g) {
            my ($name, $start) = ($1, $-[0]);
            my $end = index($code, ";", $start);
            $end = length $code if $end < 0;
            for my $lit (@$lits) {
                my ($l, $t, $pos) = @$lit;
                next if $pos < $start || $pos > $end;
                if ($t =~ $SQL_WORD) {
                    report($f, $l, "SQL built with $name(): bind parameters instead");
                    last;
                }
            }
        }
    }
}

if ($problems) {
    print "lint: $problems problem(s)\n";
    exit 1;
}
print "lint: ok\n";
exit 0;
' "${files[@]}"
