"""The wrk output parser, on output captured from wrk 4.1.0 (Debian's package), and the wrk
script of the HTTP transfers."""

import pytest

from tests.perf.load import parse_wrk, to_ms

#: wrk -t2 -c16 -d3s --latency against the hello world baseline.
PLAIN = """\
Running 3s test @ http://127.0.0.1:54983/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.65ms    3.95ms  56.00ms   90.96%
    Req/Sec     1.10k   309.97     1.76k    81.97%
  Latency Distribution
     50%    6.55ms
     75%    7.72ms
     90%   10.44ms
     99%   25.45ms
  6677 requests in 3.10s, 1.00MB read
Requests/sec:   2157.29
Transfer/sec:    330.89KB
"""

#: wrk -t2 -c4 -d2s --latency against a server answering 500 and closing, or closing unanswered.
ERRORS = """\
Running 2s test @ http://127.0.0.1:33683/
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   128.94us  154.04us   4.01ms   97.64%
    Req/Sec     8.78k     1.41k   11.77k    66.67%
  Latency Distribution
     50%  116.00us
     75%  140.00us
     90%  177.00us
     99%  437.00us
  36688 requests in 2.10s, 2.13MB read
  Socket errors: connect 0, read 18344, write 0, timeout 0
  Non-2xx or 3xx responses: 36688
Requests/sec:  17470.37
Transfer/sec:      1.02MB
"""

#: wrk -t2 -c16 -d2s --latency -s <script> whose done() prints the statuses each thread counted.
SCRIPTED = """\
Running 2s test @ http://127.0.0.1:59993/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.70ms    5.88ms  43.17ms   86.89%
    Req/Sec     1.81k     1.15k    4.44k    69.05%
  Latency Distribution
     50%    4.65ms
     75%    7.24ms
     90%   13.65ms
     99%   25.89ms
  7562 requests in 2.10s, 1.65MB read
  Non-2xx or 3xx responses: 2520
Requests/sec:   3599.40
Transfer/sec:    804.88KB
statuses 200=3574 404=1787
statuses 200=1468 404=733
"""

#: wrk -t2 -c4 -d3s --latency --timeout 1s against a server that answers two requests slowly.
SLOW = """\
Running 3s test @ http://127.0.0.1:34715/
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   750.75ms  212.58ms 901.06ms  100.00%
    Req/Sec     2.00      1.41     3.00    100.00%
  Latency Distribution
     50%  901.06ms
     75%  901.06ms
     90%  901.06ms
     99%  901.06ms
  2 requests in 3.01s, 80.00B read
Requests/sec:      0.67
Transfer/sec:      26.61B
"""


@pytest.mark.parametrize(("text", "ms"), [
    ("116.00us", 0.116), ("6.55ms", 6.55), ("901.06ms", 901.06), ("1.02s", 1020.0), ("1.50m", 90_000.0),
    ("3.10s", 3100.0), ("2h", 7_200_000.0),
])
def test_durations_convert_to_milliseconds(text, ms):
    assert to_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "12", "3.2 ms", "5ns", "ms"])
def test_what_is_not_a_duration_is_refused(text):
    with pytest.raises(ValueError, match="not a wrk duration"):
        to_ms(text)


def test_a_clean_run():
    result = parse_wrk(PLAIN)
    assert (result.requests, result.seconds, result.rps) == (6677, pytest.approx(3.10), 2157.29)
    assert (result.p50_ms, result.p99_ms) == (pytest.approx(6.55), pytest.approx(25.45))
    assert (result.bad_answers, result.socket_errors, result.errors) == (0, {}, 0)
    assert result.script_lines == []


def test_errors_and_microseconds():
    result = parse_wrk(ERRORS)
    assert (result.requests, result.rps) == (36688, 17470.37)
    assert (result.p50_ms, result.p99_ms) == (pytest.approx(0.116), pytest.approx(0.437))
    assert result.bad_answers == 36688
    assert result.socket_errors == {"read": 18344}  # the zero counts are left out
    assert result.errors == 36688 + 18344


def test_a_scripts_lines_are_kept():
    result = parse_wrk(SCRIPTED)
    assert result.bad_answers == 2520
    assert result.script_lines == ["statuses 200=3574 404=1787", "statuses 200=1468 404=733"]


def test_a_slow_server():
    result = parse_wrk(SLOW)
    assert (result.requests, result.rps, result.p50_ms, result.p99_ms) == (2, 0.67, 901.06, 901.06)


def test_output_without_figures_is_refused():
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_the_transfer_script_carries_each_sender_quoted():
    from tests.perf.transfers import _send_script

    script = _send_script([("scale000001@azora.example", {"azora_session": 'a"b\\c'},
                            {"csrf_token": "t=1&x", "currency": "AZR", "note": "", "confirmed": "1"})],
                          ["scale000002@azora.example"])
    assert '{email = "scale000001%40azora.example", cookie = "azora_session=a\\"b\\\\c", ' \
           'form = "csrf_token=t%3D1%26x&currency=AZR&note=&confirmed=1"}' in script
    assert '"scale000002%40azora.example"' in script
    assert "%(" not in script and "%%" not in script  # every placeholder filled, every % unescaped
    assert 'string.format("&amount=%d.%02d", math.floor(cents / 100), cents % 100)' in script
