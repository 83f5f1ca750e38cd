# shellcheck shell=bash disable=SC2154  # variables and functions of bench.sh
# The soak: sourced by bench.sh (mode soak) after its phases 1 and 2 (the
# cluster, nginx, one delivery checked), in place of phases 3 to 7.
#
# Producers paced at $paced_rate transactions/s (outbox.sql, pgbench -R) for
# $soak_minutes minutes; every 10 s a sample of each worker's VmRSS and
# RssAnon (/proc/<pid>/status), the messages pending and the 2xx answers
# counted so far (outbox.stats); every minute also each worker's memory
# contexts (pg_log_backend_memory_contexts() writes them to the server log;
# its "Grand total: N bytes" line is read back).  A worker is "flat" when
# its RssAnon grew by less than 2 MB from minute 1 (after warm-up) to the
# end, and by less than 200 kB a minute by least squares over those samples.
# Like the timings, the memory verdict never fails the run: a lost message
# or a broken machinery does.

samples=$dir/soak-samples.txt
flat_growth_kb=2048 flat_slope_kb=200

# Memory-context grand total of a worker in bytes, "-" if it does not
# answer within 5 s.  The dump is logged when the worker next checks for
# interrupts; its last line is "Grand total: N bytes in B blocks; ...".
memctx() {
    local pid=$1 pat n0
    pat="\\[$1\\] .*Grand total: [0-9]+ bytes"
    n0=$(grep -cE "$pat" "$dir/server.log" || true)
    [[ $(q "SELECT pg_log_backend_memory_contexts($pid)" 2>/dev/null) == t ]] || { echo -; return 0; }
    for _ in $(seq 50); do
        if (( $(grep -cE "$pat" "$dir/server.log" || true) > n0 )); then
            grep -E "$pat" "$dir/server.log" | tail -n 1 | sed -E 's/.*Grand total: ([0-9]+) bytes.*/\1/'
            return 0
        fi
        sleep 0.1
    done
    echo -
}

# One line of the samples file; with $1 = 1 also the memory contexts.
# Never fails (a failed query leaves "-"): the sampler must not die quietly.
sample() {
    local el epoch mem pd dctx=- ectx=-
    epoch=$(date +%s)
    el=$(calc %.1f "$(now) - $t0")
    mem=$(worker_mem)
    pd=$(q "SELECT (SELECT count(*) FROM outbox.messages WHERE state = 'pending'),
                   (SELECT sum(responses_2xx) FROM outbox.stats)" 2>/dev/null | tr '|' ' ') || pd='- -'
    if [[ $1 == 1 ]]; then
        dctx=$(memctx "$disp_pid") ectx=$(memctx "$dec_pid")
    fi
    echo "$el $epoch $mem ${pd:-- -} $dctx $ectx"
}
# /proc/<pid>/smaps of both workers, for a look at where the memory is
smaps() {
    cp "/proc/$disp_pid/smaps" "$dir/smaps-dispatcher-$1.txt" 2>/dev/null || true
    cp "/proc/$dec_pid/smaps" "$dir/smaps-decoder-$1.txt" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# S1. Producers paced for the soak's duration, the workers sampled
# ---------------------------------------------------------------------------
log "soak: pgbench -R $paced_rate -T $paced_secs ($soak_minutes minutes), samples every 10 s in $samples"
echo "# elapsed_s epoch disp_rss_kB disp_anon_kB dec_rss_kB dec_anon_kB pending delivered_2xx disp_memctx_B dec_memctx_B" >"$samples"
q "CHECKPOINT" >/dev/null
rm -f "$dir/soak.stop"
soak_lo=$(max_id)
disp0=$(ticks "$disp_pid") dec0=$(ticks "$dec_pid")
t0=$(now)
(
    k=0
    until [[ -e $dir/soak.stop ]]; do
        line=$(sample $(( k % 6 == 0 )))
        echo "$line" >>"$samples"
        if (( k == 6 )); then smaps 1min; fi
        if (( k % 6 == 0 )); then
            read -r el _ _ da _ ea pd dv dc ec <<<"$line"
            log "soak $((k / 6))/$soak_minutes min: RssAnon dispatcher $da kB, decoder $ea kB;" \
                "memory contexts $dc / $ec bytes; pending $pd; delivered $dv"
        fi
        k=$((k + 1))
        # the next sample at t0 + 10 k, or sooner when stopped
        while [[ ! -e $dir/soak.stop ]] && (( $(le "$(now)" "$t0 + 10 * $k") )); do
            sleep 0.5
        done
    done
) &
sampler_pid=$!
run_pgbench soak -R "$paced_rate" -T "$paced_secs" -f "$dir/outbox.sql"; tps_soak=$tps
wait_drained "$drain_timeout"
t1=$(now)
disp1=$(ticks "$disp_pid") dec1=$(ticks "$dec_pid")
soak_hi=$(max_id)
touch "$dir/soak.stop"
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=''
# The last sample: everything delivered
sample 1 >>"$samples"
smaps end
log "soak: $tps_soak tps, $((soak_hi - soak_lo)) messages, all delivered; $(grep -vc '^#' "$samples") samples"

# ---------------------------------------------------------------------------
# S2. Analysis
# ---------------------------------------------------------------------------
disp_hwm=$(status_kb "$disp_pid" VmHWM)
dec_hwm=$(status_kb "$dec_pid" VmHWM)
restarts
load_access_log
outcomes
soak_n=$((soak_hi - soak_lo))
soak_delivered=$(q "SELECT count(*) FROM outbox.messages WHERE id > $soak_lo AND id <= $soak_hi AND state = 'delivered'")
payload_bytes=$(payload_bytes "$soak_lo" "$soak_hi")
read -r lp50 lp95 lp99 lpmax lpn < <(latency "$soak_lo" "$soak_hi")
log_problems
disp_pct=$(calc %.0f "($disp1 - $disp0) / $hz / ($t1 - $t0) * 100")
dec_pct=$(calc %.0f "($dec1 - $dec0) / $hz / ($t1 - $t0) * 100")
max_pending=$(awk '!/^#/ && $7 != "-" && $7 > m { m = $7 } END { print m + 0 }' "$samples")

# Memory of one worker from the samples, columns $1 (VmRSS), $2 (RssAnon),
# $3 (memory contexts): RssAnon at minute 1, at the end, its max, its slope
# in kB/min by least squares over minute 1 to the end; VmRSS at minute 1,
# at the end; memory contexts at minute 1 (the first dump from then on) and
# at the end (the last dump); the number of samples from minute 1
mem_stats() {
    awk -v rc="$1" -v ac="$2" -v cc="$3" '
        /^#/ { next }
        { if ($ac > amax) amax = $ac }
        $1 >= 59.5 {
            if (n == 0) { a1 = $ac; r1 = $rc }
            if (c1 == "" && $cc != "-") c1 = $cc
            x = $1 / 60; y = $ac
            n++; sx += x; sy += y; sxx += x * x; sxy += x * y
        }
        { ae = $ac; re = $rc; if ($cc != "-") ce = $cc }
        END {
            d = n * sxx - sx * sx
            slope = (n > 1 && d > 0) ? (n * sxy - sx * sy) / d : 0
            slope = sprintf("%.0f", slope) + 0   # no "-0"
            printf "%d %d %d %d %d %d %s %s %d\n", a1, ae, amax, slope, r1, re,
                   (c1 == "" ? "-" : c1), (ce == "" ? "-" : ce), n
        }' "$samples"
}
read -r d_a1 d_ae d_amax d_slope d_r1 d_re d_c1 d_ce n_from1 < <(mem_stats 3 4 9)
read -r e_a1 e_ae e_amax e_slope e_r1 e_re e_c1 e_ce _ < <(mem_stats 5 6 10)

# "flat" or "GROWING", from RssAnon at minute 1, at the end, and the slope
trend() {
    if (( $2 - $1 < flat_growth_kb && $3 < flat_slope_kb )); then echo flat; else echo GROWING; fi
}
d_trend=$(trend "$d_a1" "$d_ae" "$d_slope")
e_trend=$(trend "$e_a1" "$e_ae" "$e_slope")
signed() { if (( $1 >= 0 )); then echo "+$1"; else echo "$1"; fi; }
bytes() { if [[ $1 == - ]]; then echo "n/a"; else echo "$1 B ($(calc %.2f "$1 / 1048576") MB)"; fi; }

# ---------------------------------------------------------------------------
# S3. The report
# ---------------------------------------------------------------------------
title "soak ($soak_minutes minutes)"
echo "producers: pgbench -M prepared -c $clients -j $threads -R $paced_rate -T $paced_secs, outbox.sql; payload ~$payload_bytes bytes of JSON"
echo "workers sampled every 10 s ($(grep -vc '^#' "$samples") samples, $n_from1 from minute 1), memory contexts every minute"
rule
row "worker memory" "dispatcher" "decoder" ""
rule
row "RssAnon (private) at minute 1" "$d_a1 kB" "$e_a1 kB" ""
row "RssAnon at the end" "$d_ae kB" "$e_ae kB" ""
row "RssAnon max" "$d_amax kB" "$e_amax kB" ""
row "RssAnon growth, minute 1 -> end" "$(signed $((d_ae - d_a1))) kB" "$(signed $((e_ae - e_a1))) kB" "< $flat_growth_kb kB"
row "RssAnon slope, minutes 1-$soak_minutes (least sq.)" "$(signed "$d_slope") kB/min" "$(signed "$e_slope") kB/min" "< $flat_slope_kb kB/min"
row "VmRSS minute 1 -> end (peak VmHWM)" "$((d_r1 / 1024))->$((d_re / 1024)) MB ($((disp_hwm / 1024)))" \
    "$((e_r1 / 1024))->$((e_re / 1024)) MB ($((dec_hwm / 1024)))" ""
row "memory contexts, grand total, minute 1" "$(bytes "$d_c1")" "$(bytes "$e_c1")" ""
row "memory contexts, grand total, end" "$(bytes "$d_ce")" "$(bytes "$e_ce")" ""
row "CPU at $paced_rate/s" "$disp_pct% of a core" "$dec_pct% of a core" ""
rule
row "measure" "value" "target" ""
rule
row "TPS paced (pgbench -R $paced_rate)" "$(calc %.1f "$tps_soak")" "" ""
row "messages queued (soak)" "$soak_n" "" ""
row "messages delivered (soak)" "$soak_delivered" "$soak_n" "$(mark "$( [[ $soak_delivered == "$soak_n" ]] && echo 1)")"
row "pending, max of the 10 s samples" "$max_pending" "" ""
row "latency ($lpn msgs) p50" "$lp50 ms" "<= 3 ms" "$(mark "$(le "$lp50" 3)")"
row "  p95" "$lp95 ms" "" ""
row "  p99" "$lp99 ms" "<= 10 ms" "$(mark "$(le "$lp99" 10)")"
row "  max" "$lpmax ms" "" ""
row "messages queued (whole run)" "$queued" "" ""
outcome_rows
problem_rows
rule
echo "verdict dispatcher: $d_trend (RssAnon $(signed $((d_ae - d_a1))) kB from minute 1 to the end, $(signed "$d_slope") kB/min; memory contexts $(bytes "$d_c1") -> $(bytes "$d_ce"))"
echo "verdict decoder:    $e_trend (RssAnon $(signed $((e_ae - e_a1))) kB from minute 1 to the end, $(signed "$e_slope") kB/min; memory contexts $(bytes "$e_c1") -> $(bytes "$e_ce"))"
echo "flat: RssAnon grew by less than $flat_growth_kb kB from minute 1 to the end and by less than"
echo "$flat_slope_kb kB/min (least squares over minute 1 to the end). End = after the last message"
echo "was delivered. Latency as in the full benchmark (an upper bound). Memory verdicts and timing"
echo "targets never fail the run."
echo "raw samples (every 10 s; columns in the first line): $samples"
echo "smaps of the workers at minute 1 and at the end: $dir/smaps-{dispatcher,decoder}-{1min,end}.txt"

server_log_summary
verdict
