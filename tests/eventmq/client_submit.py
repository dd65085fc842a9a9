"""Submit jobs to a router with EventMQ 0.3.13's own client code, unmodified,
and print what comes back as one JSON line per job.

usage: client_submit.py ENDPOINT HANDLER ARGS_JSON [--raw]

Sends the job twice: once with `defer_job` (the documented API) and once with
`send_request` (the lower-level one, with --raw), both with reply_requested, then
waits for the REPLY frames emq-router returns for each msgid.
"""
import json
import sys

from eventmq.client.messages import defer_job, send_request
from eventmq.sender import Sender


def main():
    endpoint, handler, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sock = Sender()
    sock.connect(endpoint)
    ids = [defer_job(sock, handler, args=args, reply_requested=True)]
    path, callable_name = handler.rsplit(".", 1)
    body = ["run", {"callable": callable_name, "path": path, "args": args,
                    "kwargs": {}, "class_args": [], "class_kwargs": {}}]
    ids.append(send_request(sock, body, reply_requested=True, timeout=30))
    pending = set(ids)
    while pending:
        if not sock.zsocket.poll(10000):
            print(json.dumps({"error": "timeout", "pending": sorted(pending)}))
            sys.exit(1)
        frames = [f.decode("utf-8", "replace") for f in sock.zsocket.recv_multipart()]
        # ["", "eMQP/1.0", "REPLY", msgid, body, of_msgid, outcome, content_type]
        if frames[2] != "REPLY" or len(frames) < 6:
            continue
        of = frames[5]
        if of in pending:
            pending.discard(of)
            print(json.dumps({"of": of, "via": "defer_job" if of == ids[0] else "send_request",
                              "body": json.loads(frames[4]), "outcome": frames[6:7]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
