-- How far each journal file (journal/<id>.jsonl, written by runs that do
-- not open the database) has been folded into the history, and the run id
-- its entries go to (its own, unless that id was taken).
CREATE TABLE journal_folded (
    file   INTEGER PRIMARY KEY,
    folded INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    writer INTEGER
);
