#!/usr/bin/env python3
"""Load generator for scripts/soak.sh: chat completions at a fixed rate over
keep-alive HTTP/1.1 connections (asyncio and plain sockets, standard library
only), JSON and streams mixed, and a check of every answer.

Every request is sent at its slot (start + i / rate) by the first free
connection; when all connections are busy the slots queue up and go out as soon
as one frees, so a slow server lowers the achieved rate instead of the offered
one silently growing. Latency is measured from the actual send to the last byte.

Each answer is classified:
  ok                 200 with the whole answer (JSON, or a stream ending in [DONE])
  <status> <code>    an error in OpenAI's shape
  200 stream_interrupted  a stream that ended with an OpenAI error event
  bad: ...           anything else (not clean): counted as a failure
A cache hit (x-triage-cache: hit) whose answer is not the whole answer is a
failure too ("bad hit"). After the load, every request whose answer was not whole
is sent once more, identically: a hit then must carry the whole answer.

Writes a JSON summary (--out) and the x-triage-request-id of every response, one
per line (--ids).
"""

import argparse
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlparse


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--rate", type=float, default=600, help="requests per second offered")
    p.add_argument("--concurrency", type=int, default=128, help="connections")
    p.add_argument("--prompts", required=True)
    p.add_argument("--stream-share", type=float, default=0.5)
    p.add_argument("--scopes", type=int, default=200,
                   help="distinct `seed` values: each is its own cache scope")
    p.add_argument("--answer", required=True, help="the upstream's whole answer")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--replay-limit", type=int, default=2000)
    p.add_argument("--out", required=True)
    p.add_argument("--ids", required=True)
    return p.parse_args()


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except Exception:
                pass
        self.reader = self.writer = None

    async def post(self, path, body):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # Trailers (none expected), then the blank line.
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                parts.append(await self.reader.readexactly(size + 2))
            data = b"".join(p[:-2] for p in parts)
        elif "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:
            raise HttpError("response without length")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data


def sse_data(text):
    out = []
    for event in text.split("\n\n"):
        for line in event.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
                break
    return out


def classify(status, headers, data, answer):
    """(kind, whole): kind names the outcome; whole is True for the whole answer."""
    text = data.decode("utf-8", "replace")
    if status != 200:
        try:
            err = json.loads(text)["error"]
            assert isinstance(err["message"], str) and isinstance(err["type"], str)
            return f"{status} {err['code']}", False
        except Exception:
            return f"bad: {status} without an OpenAI error body", False
    if headers.get("content-type", "").startswith("text/event-stream"):
        content, finished, error, junk = [], False, None, 0
        events = sse_data(text)
        for d in events:
            if d == "[DONE]":
                continue
            try:
                v = json.loads(d)
            except ValueError:
                junk += 1
                continue
            if "error" in v:
                error = v["error"].get("code") or "no code"
                continue
            ch = (v.get("choices") or [{}])[0]
            c = (ch.get("delta") or {}).get("content")
            if c:
                content.append(c)
            finished |= ch.get("finish_reason") == "stop"
        if events and events[-1] == "[DONE]" and error is None:
            if finished and "".join(content) == answer and junk == 0:
                return "ok", True
            return "bad: a complete-looking stream with a wrong answer", False
        if error is not None and events and "error" in events[-1]:
            return f"200 {error}", False
        return "bad: a stream without [DONE] or an error event", False
    try:
        v = json.loads(text)
        ch = v["choices"][0]
        if ch.get("finish_reason") == "stop" and ch["message"]["content"] == answer:
            return "ok", True
        return "bad: 200 JSON with a wrong answer", False
    except Exception:
        return "bad: 200 body is not a chat completion", False


class Load:
    def __init__(self, a):
        self.a = a
        u = urlparse(a.url)
        self.host, self.port = u.hostname, u.port or 80
        with open(a.prompts, encoding="utf-8") as f:
            self.prompts = [l.strip() for l in f if l.strip()]
        self.rng = random.Random(a.seed)
        self.records = []  # (phase, latency_s, kind, cache, request)
        self.ids = []
        self.bad_hits = []
        self.next_slot = 0
        self.lags = []  # seconds a request went out after its slot, when it was late

    def make(self):
        r = self.rng
        return {
            "prompt": r.choice(self.prompts),
            "stream": r.random() < self.a.stream_share,
            "seed": r.randrange(self.a.scopes),
        }

    @staticmethod
    def body(req):
        return json.dumps({
            "model": "auto", "temperature": 0, "seed": req["seed"], "stream": req["stream"],
            "messages": [{"role": "user", "content": req["prompt"]}],
        }).encode()

    async def one(self, conn, req, phase):
        t0 = time.perf_counter()
        try:
            status, headers, data = await asyncio.wait_for(
                conn.post("/v1/chat/completions", self.body(req)), self.a.timeout)
        except Exception as e:  # noqa: BLE001 - every client-side failure is counted
            await conn.close()
            self.records.append((phase, time.perf_counter() - t0,
                                 f"client: {type(e).__name__}", "", req))
            return None
        dt = time.perf_counter() - t0
        kind, whole = classify(status, headers, data, self.a.answer)
        cache = headers.get("x-triage-cache", "")
        rid = headers.get("x-triage-request-id")
        if rid:
            self.ids.append(rid)
        else:
            kind = "bad: no x-triage-request-id"
        if cache == "hit" and not whole:
            self.bad_hits.append({"request": req, "kind": kind, "phase": phase})
        self.records.append((phase, dt, kind, cache, req))
        return whole

    async def worker(self, start, end):
        conn = Conn(self.host, self.port)
        loop = asyncio.get_running_loop()
        while True:
            slot = self.next_slot
            self.next_slot += 1
            at = start + slot / self.a.rate
            if at >= end:
                break
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif -wait > 0.001:
                self.lags.append(-wait)
            await self.one(conn, self.make(), "load")
        await conn.close()

    async def replay(self, reqs):
        queue = asyncio.Queue()
        for r in reqs:
            queue.put_nowait(r)

        async def w():
            conn = Conn(self.host, self.port)
            while not queue.empty():
                await self.one(conn, queue.get_nowait(), "replay")
            await conn.close()

        await asyncio.gather(*(w() for _ in range(min(16, max(1, len(reqs))))))

    async def run(self):
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1
        end = start + self.a.duration
        t0 = time.perf_counter()
        await asyncio.gather(*(self.worker(start, end) for _ in range(self.a.concurrency)))
        load_wall = time.perf_counter() - t0 - 0.1
        # Every request whose answer was not whole, once more. (Unique: a repeat
        # of the same request would test nothing new.)
        seen, again = set(), []
        for phase, _, kind, _, req in self.records:
            key = (req["prompt"], req["seed"], req["stream"])
            if kind != "ok" and key not in seen:
                seen.add(key)
                again.append(req)
        again = again[: self.a.replay_limit]
        await self.replay(again)
        return load_wall, len(again)


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    a = parse_args()
    load = Load(a)
    load_wall, replays = asyncio.run(load.run())
    recs = [r for r in load.records if r[0] == "load"]
    kinds, caches = {}, {}
    for _, _, kind, cache, _ in recs:
        kinds[kind] = kinds.get(kind, 0) + 1
        caches[cache or "(none)"] = caches.get(cache or "(none)", 0) + 1
    replay_kinds = {}
    for phase, _, kind, cache, _ in load.records:
        if phase == "replay":
            k = f"{kind} / cache {cache or '(none)'}"
            replay_kinds[k] = replay_kinds.get(k, 0) + 1
    lat = [r[1] * 1000 for r in recs if not r[2].startswith("client")]
    lat_ok = [r[1] * 1000 for r in recs if r[2] == "ok"]
    streams = sum(1 for r in recs if r[4]["stream"])
    summary = {
        "duration_s": round(load_wall, 2),
        "requests": len(recs),
        "requests_per_s": round(len(recs) / load_wall, 1) if load_wall > 0 else 0,
        "offered_per_s": a.rate,
        "connections": a.concurrency,
        "streams": streams,
        "outcomes": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "cache": caches,
        "latency_ms": {"p50": round(pct(lat, 50), 2), "p90": round(pct(lat, 90), 2),
                       "p99": round(pct(lat, 99), 2), "max": round(max(lat or [0]), 2)},
        "latency_ok_ms": {"p50": round(pct(lat_ok, 50), 2), "p99": round(pct(lat_ok, 99), 2)},
        # Requests that went out after their slot (every connection was busy), and
        # how late the worst 1% of all requests went out.
        "late_sends": len(load.lags),
        "send_lag_p99_ms": round(pct(load.lags + [0.0] * (len(recs) - len(load.lags)), 99) * 1000, 2),
        "replayed": replays,
        "replay_outcomes": replay_kinds,
        "responses_with_id": len(load.ids),
        "client_failures": sum(1 for r in load.records if r[2].startswith("client")),
        "unclean": sum(1 for r in load.records if r[2].startswith("bad")),
        "bad_hits": len(load.bad_hits),
        "bad_hit_examples": load.bad_hits[:5],
    }
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=2)
    with open(a.ids, "w") as f:
        f.write("\n".join(load.ids) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
