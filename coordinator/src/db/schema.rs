//! The tables of the state database, and the columns added since the first schema (an older
//! run database gains them on open). Names stored in text columns are the enums of
//! [`super::types`].

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, kind TEXT NOT NULL, stage INTEGER NOT NULL,
  descriptor TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL, failures INTEGER NOT NULL,
  not_before INTEGER NOT NULL, worker TEXT, deadline INTEGER, committed_attempt INTEGER,
  output TEXT, checksum TEXT, error TEXT);
DROP INDEX IF EXISTS units_ready;
CREATE INDEX IF NOT EXISTS units_lease ON units(state, stage, seq, not_before);
CREATE TABLE IF NOT EXISTS attempts (
  unit TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL, started INTEGER NOT NULL,
  ended INTEGER, outcome TEXT, error TEXT, PRIMARY KEY (unit, attempt));
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, tag TEXT NOT NULL,
  started INTEGER NOT NULL, last_seen INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slurm_tasks (
  id TEXT PRIMARY KEY, array_job TEXT NOT NULL, submitted INTEGER NOT NULL,
  ended INTEGER, state TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, kind TEXT NOT NULL,
  unit TEXT, worker TEXT, detail TEXT);
";

/// Creates the tables if needed and adds the columns an older database lacks.
pub(super) fn create_or_migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    // Added after the first schema: older run databases gain the column on open.
    let has_device = conn.prepare("SELECT device FROM workers LIMIT 0").is_ok();
    if !has_device {
        conn.execute_batch("ALTER TABLE workers ADD COLUMN device TEXT NOT NULL DEFAULT 'cpu'")?;
    }
    Ok(())
}
