-- How far each journal file (journal/<pid>-<start>-<n>.jsonl, one per
-- writing process) has been folded into the history, and whether its
-- writer has closed it.
CREATE TABLE journal_folded (
    file   TEXT    PRIMARY KEY,
    folded INTEGER NOT NULL,
    closed INTEGER NOT NULL
);
-- Runs of a journal file recorded under another id than the file gave
-- them, because that id was taken (a run-id file older than the history).
CREATE TABLE journal_moved (
    file    TEXT    NOT NULL,
    from_id INTEGER NOT NULL,
    to_id   INTEGER NOT NULL,
    PRIMARY KEY (file, from_id)
);
