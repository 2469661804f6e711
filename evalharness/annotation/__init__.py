"""Stage `annotation`: typicality ratings of human and generated texts, from people, for HUSE and
human-evaluation tables (Holtzman et al. 2019, section 6; Hashimoto et al. 2019).

Entry points: command.register_command (`python -m evalharness annotate ...`), app.serve (the
rating page), export.export_judgements (judgements.csv, which the `huse` scorer reads).
plan.py     which texts go into which HIT (one run per HIT, shuffled, N ratings per text)
store.py    the SQLite store of annotators (hashed tokens), assigned HITs, ratings (WAL, with
            history) and the platforms' approvals: crowd ratings count once approved
app.py      the rating page and its JSON API (Starlette on uvicorn)
static/     the page itself (HTML, CSS, one script; no inline script)
export.py   judgements.csv, the file the `huse` scorer reads
crowd.py    MTurk batch CSV + question template, Prolific study links, and the import of MTurk's
            results or Prolific's submissions export (approve, keep pending, or withdraw)
command.py  the `annotate` command line
The rating scale itself is `records.TYPICALITY_SCALE`, shared with the `huse` scorer.
"""
