"""Schedule (or unschedule) a program with EventMQ 0.3.13's own client code,
unmodified, and print the router's answer as one JSON line.

usage: client_schedule.py ENDPOINT schedule|unschedule QUEUE INTERVAL CRON HEADERS ARGV_JSON

INTERVAL is seconds ("" for none), CRON a cron string ("" for none), HEADERS
comma-separated. The job calls emq's `emq.exec` built-in (EventMQ path "emq",
callable "exec") with `argv`. EventMQ's client does not wait for an answer;
this script reads the ACK or ERROR emq-router sends back.
"""
import json
import sys

from eventmq.client.messages import schedule
from eventmq.sender import Sender


def main():
    endpoint, action, queue, interval, cron, headers, argv = sys.argv[1:8]
    sock = Sender()
    sock.connect(endpoint)
    msgid = schedule(
        sock,
        "emq.exec",
        interval_secs=int(interval) if interval else None,
        kwargs={"argv": json.loads(argv)},
        headers=tuple(h for h in headers.split(",") if h),
        queue=queue,
        unschedule=(action == "unschedule"),
        cron=cron or None,
    )
    if msgid is None:
        print(json.dumps({"answer": "client refused"}))
        sys.exit(1)
    if not sock.zsocket.poll(10000):
        print(json.dumps({"answer": "timeout"}))
        sys.exit(1)
    frames = [f.decode("utf-8", "replace") for f in sock.zsocket.recv_multipart()]
    # ["", "eMQP/1.0", "ACK", msgid, of] or ["", "eMQP/1.0", "ERROR", msgid, of, code, reason]
    answer = {"answer": frames[2], "of": frames[4], "msgid": msgid}
    if frames[2] == "ERROR":
        answer.update(code=frames[5], reason=frames[6])
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
