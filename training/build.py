#!/usr/bin/env python3
"""Merge training/sources/*.jsonl into the fixed train/validation split.

Deduplicates (case- and whitespace-insensitive), checks every row against the
labeling guide's tiers and kinds, and assigns each text to a split by a hash of its
normalized text: the split of a text never changes when other data is added.
Prints the counts that the data card (training/README.md) reports.

    python3 training/build.py            # writes training/train.jsonl, training/validation.jsonl
    python3 training/build.py --check    # only verifies the committed files are up to date
"""
import collections, glob, hashlib, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
VALIDATION_PERCENT = 20
KINDS = {
    "SIMPLE": {"greeting", "faq", "factual"},
    "MODERATE": {"summarization", "translation", "analysis", "ideas", "advice", "howto", "drafting"},
    "COMPLEX": {"reasoning", "code", "creative"},
}


def norm(text):
    return " ".join(text.lower().split())


def split_of(text):
    h = int(hashlib.sha256(norm(text).encode()).hexdigest()[:8], 16)
    return "validation" if h % 100 < VALIDATION_PERCENT else "train"


def main():
    rows, seen, dropped = [], set(), 0
    for path in sorted(glob.glob(os.path.join(HERE, "sources", "*.jsonl"))):
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            if not line.strip():
                continue
            r = json.loads(line)
            where = f"{os.path.basename(path)}:{n}"
            fields = set(r) - {"context"}
            assert fields == {"text", "tier", "kind", "source"}, f"{where}: fields {sorted(r)}"
            assert "context" not in r or (isinstance(r["context"], str) and r["context"].strip()), \
                f"{where}: empty context"
            assert r["tier"] in KINDS, f"{where}: tier {r['tier']}"
            assert r["kind"] in KINDS[r["tier"]], f"{where}: kind {r['kind']} not in {r['tier']}"
            assert r["text"].strip(), f"{where}: empty text"
            key = norm(r.get("context", "") + "\n" + r["text"])
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            rows.append(r)
    out = {"train": [], "validation": []}
    for r in rows:
        # A follow-up shares its context's split, so a conversation never straddles it.
        out[split_of(r.get("context") or r["text"])].append(r)
    rendered = {
        name: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items)
        for name, items in out.items()
    }
    if "--check" in sys.argv:
        for name, text in rendered.items():
            with open(os.path.join(HERE, f"{name}.jsonl"), encoding="utf-8") as f:
                if f.read() != text:
                    sys.exit(f"training/{name}.jsonl is out of date: run python3 training/build.py")
        print("up to date")
        return
    for name, text in rendered.items():
        with open(os.path.join(HERE, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            f.write(text)
    report(rows, out, dropped)


def report(rows, out, dropped):
    print(f"{len(rows)} examples ({dropped} duplicates dropped); "
          f"train {len(out['train'])}, validation {len(out['validation'])}\n")
    def table(title, key):
        c = collections.Counter()
        for split, items in out.items():
            for r in items:
                c[(key(r), split)] += 1
        names = sorted({k for k, _ in c})
        print(f"| {title} | train | validation | total |\n|---|---:|---:|---:|")
        for k in names:
            t, v = c[(k, "train")], c[(k, "validation")]
            print(f"| {k} | {t} | {v} | {t + v} |")
        print()
    table("tier", lambda r: r["tier"])
    table("tier / kind", lambda r: f"{r['tier']} / {r['kind']}")
    table("source", lambda r: r["source"])
    words = [len(r["text"].split()) for r in rows]
    buckets = [(1, 6), (7, 40), (41, 150), (151, 10**9)]
    print("| words | examples |\n|---|---:|")
    for lo, hi in buckets:
        label = f"{lo}+" if hi > 10**8 else f"{lo}-{hi}"
        print(f"| {label} | {sum(lo <= w <= hi for w in words)} |")


if __name__ == "__main__":
    main()
