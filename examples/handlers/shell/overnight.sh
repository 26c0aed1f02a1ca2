# overnight.sh: speak overnight's job protocol from a shell job (POSIX sh).
#
#   . /path/to/overnight.sh
#   on_progress 25 "loading orders"
#   on_warning "2 rows skipped" SKIP        # message, optional code
#   on_error "warehouse refused" E_CONN
#   on_notice "cache warmed"
#   on_detail rows 1204                     # name, value
#   on_status warning                       # success | warning | failed
#   on_finish "imported 1204 rows"          # the summary, in $OVERNIGHT_REPORT
#
# Each call is one protocol line on stdout, seen live by `overnight logs -f`
# and routed to its log target; line breaks in a message become spaces.

# One line: line breaks and carriage returns become spaces.
_overnight_line() {
    printf '%s' "$1" | tr '\r\n' '  '
}

# `::KIND::message`, or `::KIND code=CODE::message`.
_overnight_say() {
    if [ -n "${3-}" ]; then
        printf '::%s code=%s::%s\n' "$1" "$(_overnight_line "$3" | tr ',=:' ';  ')" "$(_overnight_line "$2")"
    else
        printf '::%s::%s\n' "$1" "$(_overnight_line "$2")"
    fi
}

on_progress() { printf '::progress::%s%% %s\n' "$1" "$(_overnight_line "${2-}")"; }
on_error() { _overnight_say error "$1" "${2-}"; }
on_warning() { _overnight_say warning "$1" "${2-}"; }
on_notice() { _overnight_say notice "$1" "${2-}"; }
on_detail() { printf '::detail::%s=%s\n' "$(_overnight_line "$1" | tr '=' '_')" "$(_overnight_line "$2")"; }
on_status() { printf '::status::%s\n' "$1"; }

# Writes the run's summary to $OVERNIGHT_REPORT as a JSON report
# (backslashes, quotes and control characters escaped).
on_finish() {
    [ -n "${OVERNIGHT_REPORT-}" ] || return 0
    summary=$(_overnight_line "${1-}" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\000-\037')
    printf '{"summary": "%s"}\n' "$summary" > "$OVERNIGHT_REPORT"
}
