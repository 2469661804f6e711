"""`annotate`: typicality ratings of human and generated texts, from people, for HUSE and
human-evaluation tables (Holtzman et al. 2019, section 6; Hashimoto et al. 2019).

plan.py     which texts go into which HIT (one run per HIT, shuffled, N ratings per text)
store.py    the SQLite store of annotators, assigned HITs and ratings (WAL, with history)
app.py      the rating page and its JSON API (Starlette on uvicorn)
static/     the page itself (HTML, CSS, one script; no inline script)
export.py   judgements.csv, the file the `huse` scorer reads
crowd.py    MTurk batch CSV + question template, Prolific study links, MTurk results import
command.py  the `annotate` command line
"""
