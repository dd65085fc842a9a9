//! The journal in Postgres, shared by an active router and its standbys.
//!
//! One router is active at a time: the one holding the lease, a single row
//! (`emq_lease`) with a fencing epoch and an expiry on the database's clock.
//! A standby takes the lease once it has expired, adding one to the epoch.
//! Every commit of the active router is one statement that first renews the
//! lease *if the epoch is still its own* and only then writes its rows, so a
//! deposed router's writes change nothing: its commit reports
//! [`StoreError::Deposed`].
//!
//! The active router acts (sends anything) only while its lease is surely
//! its own: until the local instant it sent its last successful renewal
//! plus the lease, less a tenth for clock-rate differences. The database
//! stamped that renewal no earlier than it was sent, so no standby can take
//! over before that instant: a router cut off from the database goes quiet
//! before anyone else goes active.
//!
//! Schema: versioned in `emq_schema`, created and migrated by the router
//! (under an advisory lock, so routers starting together do it once); a
//! newer version than this router knows is refused. Guaranteed jobs, the
//! bulk of the writes, have a table of their own (`emq_jobs`): a job's
//! record and body share one row, so a job costs one insert, one update in
//! place (a fill factor leaves room for it on the page) and one delete, not
//! five row writes; the other tables of the journal share `emq_journal`.

use std::time::{Duration, Instant};

use log::{info, warn};
use postgres::{Client, NoTls};

use super::{JobStore, StoreError};
use crate::journal::{Row, StoreOp, Table};
use emq_proto::views::{HaStatus, StandbyRouter};
use strum::IntoEnumIterator;

/// The schema version this router writes.
pub const SCHEMA_VERSION: i32 = 2;

/// Migrations, in order: `MIGRATIONS[n]` takes version `n` to `n + 1`.
const MIGRATIONS: [&str; 2] = [
    "
    CREATE TABLE emq_journal (
        tbl text NOT NULL,
        key text NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (tbl, key)
    );
    CREATE TABLE emq_lease (
        id int PRIMARY KEY CHECK (id = 1),
        epoch bigint NOT NULL,
        holder text,
        endpoints text,
        expires_at timestamptz NOT NULL
    );
    INSERT INTO emq_lease VALUES (1, 0, NULL, NULL, '-infinity');
    CREATE TABLE emq_routers (
        name text PRIMARY KEY,
        endpoints text NOT NULL,
        seen_at timestamptz NOT NULL
    );
",
    "
    CREATE TABLE emq_jobs (
        key text COLLATE \"C\" PRIMARY KEY,
        record bytea,
        body bytea
    ) WITH (fillfactor = 80);
    INSERT INTO emq_jobs (key, record, body)
        SELECT key, (array_agg(value) FILTER (WHERE tbl = 'records'))[1],
            (array_agg(value) FILTER (WHERE tbl = 'bodies'))[1]
        FROM emq_journal WHERE tbl IN ('records', 'bodies') GROUP BY key;
    DELETE FROM emq_journal WHERE tbl IN ('records', 'bodies');
",
];

/// The advisory lock key routers take while migrating ("emq").
const MIGRATION_LOCK: i64 = 0x0065_6d71;

/// One statement, so one transaction and one round trip: renew the lease if
/// the epoch is ours, then (only then) write. Returns 1 row if it was ours.
/// A job's column given as NULL is left as it is; given empty, it is
/// removed (no record or body encodes to nothing).
const COMMIT: &str = "
    WITH lease AS (
        UPDATE emq_lease SET expires_at = now() + make_interval(secs => $2)
        WHERE id = 1 AND epoch = $1 RETURNING epoch
    ), puts AS (
        INSERT INTO emq_journal (tbl, key, value)
        SELECT p.tbl, p.key, p.value FROM unnest($3::text[], $4::text[], $5::bytea[]) AS p(tbl, key, value)
        WHERE EXISTS (SELECT 1 FROM lease)
        ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value
    ), deletes AS (
        DELETE FROM emq_journal j USING unnest($6::text[], $7::text[]) AS d(tbl, key)
        WHERE j.tbl = d.tbl AND j.key = d.key AND EXISTS (SELECT 1 FROM lease)
    ), job_puts AS (
        INSERT INTO emq_jobs AS j (key, record, body)
        SELECT p.key, p.record, p.body FROM unnest($8::text[], $9::bytea[], $10::bytea[]) AS p(key, record, body)
        WHERE EXISTS (SELECT 1 FROM lease)
        ON CONFLICT (key) DO UPDATE SET
            record = CASE WHEN EXCLUDED.record IS NULL THEN j.record ELSE nullif(EXCLUDED.record, '') END,
            body = CASE WHEN EXCLUDED.body IS NULL THEN j.body ELSE nullif(EXCLUDED.body, '') END
    ), job_deletes AS (
        DELETE FROM emq_jobs WHERE key = ANY($11::text[]) AND EXISTS (SELECT 1 FROM lease)
    )
    SELECT epoch FROM lease";

/// A job row left with neither record nor body (only a removal of one of
/// the two, which the router does not make, leaves one).
const DROP_EMPTY_JOBS: &str = "
    DELETE FROM emq_jobs WHERE coalesce(length(record), 0) = 0 AND coalesce(length(body), 0) = 0";

/// Take the lease if it has expired (or was never held).
const ACQUIRE: &str = "
    UPDATE emq_lease SET epoch = epoch + 1, holder = $1, endpoints = $2,
        expires_at = now() + make_interval(secs => $3)
    WHERE id = 1 AND expires_at < now()
    RETURNING epoch";

/// A router's check-in, which `emq-cli status` shows.
const CHECK_IN: &str = "
    INSERT INTO emq_routers (name, endpoints, seen_at) VALUES ($1, $2, now())
    ON CONFLICT (name) DO UPDATE SET endpoints = EXCLUDED.endpoints, seen_at = now()";

/// What a standby learns from one attempt at the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The lease is ours, at this epoch.
    Active(u64),
    /// Another router holds it.
    Held {
        /// Its name.
        holder: String,
        /// Its endpoints.
        endpoints: String,
        /// Until its lease expires unless renewed, in ms.
        expires_in_ms: u64,
    },
}

/// The Postgres journal of one router.
pub struct PgStore {
    config: postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
    client: Option<Client>,
    /// The commit statement, prepared once per connection (a statement
    /// given as text is parsed again at every call: one more round trip).
    commit_statement: Option<postgres::Statement>,
    name: String,
    endpoints: String,
    lease: Duration,
    /// Ours once active.
    epoch: Option<u64>,
    /// We may act until then (see the module header).
    valid_until: Instant,
    /// When the lease was last renewed (by a commit or a keep).
    renewed_at: Instant,
    /// When the standbys were last read.
    peers_read_at: Option<Instant>,
    standbys: Vec<StandbyRouter>,
}

fn failed(what: &str, e: postgres::Error) -> StoreError {
    StoreError::Failed(format!("{what}: {}", describe(&e)))
}

impl PgStore {
    /// Connect and bring the schema to this router's version. `endpoints`:
    /// what other routers and `emq-cli status` are told about this one.
    pub fn open(url: &str, name: &str, endpoints: &str, lease: Duration) -> Result<PgStore, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| failed("the journal URL is not a Postgres URL", e))?;
        // A dead network must not hold the loop past the lease: connects and
        // unacknowledged writes give up within a quarter of it.
        config
            .application_name(&format!("emq-router {name}"))
            .connect_timeout(lease / 4)
            .tcp_user_timeout(lease / 4)
            .keepalives(true)
            // Keepalive times are whole seconds (0 is refused).
            .keepalives_idle((lease / 4).max(Duration::from_secs(1)))
            // Commits are planned with their own arrays: a generic plan made
            // while the tables were empty (a fresh journal) scans them whole
            // at every commit once they have grown.
            .options("-c plan_cache_mode=force_custom_plan")
            .notice_callback(|notice| log::debug!("postgres: {}", notice.message()));
        let now = Instant::now();
        let mut store = PgStore {
            config,
            shown: redact(url),
            client: None,
            commit_statement: None,
            name: name.to_string(),
            endpoints: endpoints.to_string(),
            lease,
            epoch: None,
            valid_until: now,
            renewed_at: now,
            peers_read_at: None,
            standbys: Vec::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The database as shown in messages (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The connection, made again if it was lost.
    fn client(&mut self) -> Result<&mut Client, postgres::Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.commit_statement = None;
            self.client = Some(self.config.connect(NoTls)?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Run `f` on the connection; an error drops the connection, so the
    /// next call connects afresh.
    fn with_client<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let result = self.client().and_then(f);
        if result.is_err() {
            self.client = None;
            self.commit_statement = None;
        }
        result
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let shown = self.shown.clone();
        let name = self.name.clone();
        let client = self
            .client()
            .map_err(|e| failed(&format!("cannot connect to the journal {shown}"), e))?;
        let mut txn = client.transaction().map_err(|e| failed("begin", e))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|e| failed("lock the schema", e))?;
        txn.batch_execute("CREATE TABLE IF NOT EXISTS emq_schema (version int NOT NULL)")
            .map_err(|e| failed("create emq_schema", e))?;
        let found: Option<i32> = txn
            .query_opt("SELECT version FROM emq_schema", &[])
            .map_err(|e| failed("read the schema version", e))?
            .map(|r| r.get(0));
        let version = found.unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Failed(format!(
                "the journal {shown} has schema version {version}, newer than this router's \
                 {SCHEMA_VERSION}: upgrade this router"
            )));
        }
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            txn.batch_execute(migration)
                .map_err(|e| failed(&format!("migrate the schema from version {from}"), e))?;
        }
        if found.is_none() {
            txn.execute("INSERT INTO emq_schema VALUES ($1)", &[&SCHEMA_VERSION])
        } else {
            txn.execute("UPDATE emq_schema SET version = $1", &[&SCHEMA_VERSION])
        }
        .map_err(|e| failed("record the schema version", e))?;
        txn.commit().map_err(|e| failed("commit the schema", e))?;
        if version < SCHEMA_VERSION {
            info!("journal {shown}: schema version {version} -> {SCHEMA_VERSION} (by {name})");
        }
        Ok(())
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// How long before the database's expiry we stop acting: a tenth for
    /// clocks that run at slightly different rates.
    fn usable(&self) -> Duration {
        self.lease - self.lease / 10
    }

    /// Try to become the active router: check in as a standby, then take
    /// the lease if it has expired.
    pub fn attempt(&mut self) -> Result<Attempt, StoreError> {
        let (name, endpoints, secs) = (self.name.clone(), self.endpoints.clone(), self.lease_secs());
        let sent = Instant::now();
        let shown = self.shown.clone();
        let got = self
            .with_client(|c| {
                c.execute(CHECK_IN, &[&name, &endpoints])?;
                let taken = c.query_opt(ACQUIRE, &[&name, &endpoints, &secs])?;
                if let Some(row) = taken {
                    return Ok(Attempt::Active(row.get::<_, i64>(0) as u64));
                }
                let row = c.query_one(
                    "SELECT coalesce(holder, ''), coalesce(endpoints, ''), \
                     greatest(0, extract(epoch FROM expires_at - now()) * 1000)::bigint FROM emq_lease",
                    &[],
                )?;
                Ok(Attempt::Held {
                    holder: row.get(0),
                    endpoints: row.get(1),
                    expires_in_ms: row.get::<_, i64>(2) as u64,
                })
            })
            .map_err(|e| failed(&format!("journal {shown}"), e))?;
        if sent.elapsed() > self.lease / 4 {
            info!(
                "an attempt at the lease took {:?} (the database is slow)",
                sent.elapsed()
            );
        }
        if let Attempt::Active(epoch) = got {
            self.epoch = Some(epoch);
            self.renewed_at = sent;
            self.valid_until = sent + self.usable();
        }
        Ok(got)
    }

    /// Renew the lease now; `Deposed` if it is no longer ours.
    fn renew(&mut self) -> Result<(), StoreError> {
        self.commit_now(&[])
    }

    /// Renew and write, in one statement; retried on any error while the
    /// lease lasts (a lost connection, a restarting server, a refused login:
    /// stepping down is always safe, exiting would throw away the retry). Tried once even past it: if the epoch is still ours,
    /// nobody took over and we carry on.
    fn commit_now(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let Some(epoch) = self.epoch else {
            return Err(StoreError::Deposed("this router does not hold the lease".into()));
        };
        let batch = Batch::of(ops);
        let secs = self.lease_secs();
        let mut warned = false;
        loop {
            let sent = Instant::now();
            let epoch_param = epoch as i64;
            let mut prepared = self.commit_statement.take();
            let result = self.with_client(|c| {
                let statement = match prepared.take() {
                    Some(s) => s,
                    None => c.prepare(COMMIT)?,
                };
                prepared = Some(statement.clone());
                c.query(
                    &statement,
                    &[
                        &epoch_param,
                        &secs,
                        &batch.put_tables,
                        &batch.put_keys,
                        &batch.put_values,
                        &batch.delete_tables,
                        &batch.delete_keys,
                        &batch.job_keys,
                        &batch.job_records,
                        &batch.job_bodies,
                        &batch.job_deletes,
                    ],
                )
            });
            if result.is_ok() {
                self.commit_statement = prepared;
            }
            match result {
                Ok(rows) if rows.is_empty() => {
                    self.epoch = None;
                    return Err(StoreError::Deposed(format!(
                        "another router took the lease on {} (our epoch was {epoch})",
                        self.shown
                    )));
                }
                Ok(_) => {
                    if warned {
                        info!("journal {} reachable again", self.shown);
                    }
                    self.renewed_at = sent;
                    self.valid_until = sent + self.usable();
                    return Ok(());
                }
                Err(e) => {
                    let e = describe(&e);
                    // Tried at least once: past the lease, a standby may
                    // have taken over, and we may not act any more.
                    if Instant::now() >= self.valid_until {
                        self.epoch = None;
                        return Err(StoreError::Deposed(format!(
                            "the lease on {} (epoch {epoch}) ran out before it could be renewed ({e})",
                            self.shown
                        )));
                    }
                    if !warned {
                        warn!(
                            "journal {} unreachable ({e}): holding acknowledgements, retrying until the lease \
                             runs out in {:?}",
                            self.shown,
                            self.valid_until.saturating_duration_since(sent)
                        );
                        warned = true;
                    }
                    // Not a fixed pace: a connect attempt itself waits up to
                    // a quarter of the lease.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Read the routers that checked in recently, other than us.
    fn read_peers(&mut self) -> Result<(), StoreError> {
        let (name, endpoints, window) = (self.name.clone(), self.endpoints.clone(), 3.0 * self.lease_secs());
        let rows = self
            .with_client(|c| {
                c.execute(CHECK_IN, &[&name, &endpoints])?;
                c.query(
                    "SELECT name, endpoints, \
                     greatest(0, extract(epoch FROM now() - seen_at) * 1000)::bigint FROM emq_routers \
                     WHERE name <> $1 AND seen_at > now() - make_interval(secs => $2) ORDER BY name",
                    &[&name, &window],
                )
            })
            .map_err(|e| failed("read the standbys", e))?;
        self.standbys = rows
            .iter()
            .map(|r| StandbyRouter {
                name: r.get(0),
                endpoints: r.get(1),
                seen_ms_ago: r.get::<_, i64>(2) as u64,
            })
            .collect();
        Ok(())
    }
}

impl JobStore for PgStore {
    fn load(&mut self) -> Result<Vec<Row>, StoreError> {
        let shown = self.shown.clone();
        let (rows, jobs) = self
            .with_client(|c| {
                c.execute(DROP_EMPTY_JOBS, &[])?;
                let rows = c.query("SELECT tbl, key, value FROM emq_journal", &[])?;
                let jobs = c.query("SELECT key, record, body FROM emq_jobs", &[])?;
                Ok((rows, jobs))
            })
            .map_err(|e| failed(&format!("load the journal {shown}"), e))?;
        let mut out = Vec::with_capacity(rows.len() + 2 * jobs.len());
        for r in jobs {
            let key: String = r.get(0);
            for (table, value) in [(Table::Records, r.get(1)), (Table::Bodies, r.get(2))] {
                let value: Option<Vec<u8>> = value;
                if let Some(value) = value.filter(|v| !v.is_empty()) {
                    out.push(Row {
                        table,
                        key: key.clone(),
                        value,
                    });
                }
            }
        }
        for r in rows {
            let tbl: &str = r.get(0);
            let table = Table::iter().find(|t| t.name() == tbl).ok_or_else(|| {
                StoreError::Failed(format!("journal {shown} has a table {tbl:?} this router does not know"))
            })?;
            out.push(Row {
                table,
                key: r.get(1),
                value: r.get(2),
            });
        }
        Ok(out)
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        self.commit_now(ops)
    }

    fn tenure(&self) -> Option<Instant> {
        Some(self.valid_until)
    }

    fn keep(&mut self, now: Instant) -> Result<(), StoreError> {
        if now >= self.renewed_at + self.lease / 3 {
            self.renew()?;
        }
        if self.peers_read_at.is_none_or(|at| now >= at + Duration::from_secs(1)) {
            self.peers_read_at = Some(now);
            if let Err(e) = self.read_peers() {
                warn!("{e}");
            }
        }
        Ok(())
    }

    fn next_keep(&self) -> Option<Instant> {
        let peers = self
            .peers_read_at
            .map_or(self.renewed_at, |at| at + Duration::from_secs(1));
        Some((self.renewed_at + self.lease / 3).min(peers))
    }

    fn release(&mut self) {
        let Some(epoch) = self.epoch.take() else {
            return;
        };
        let epoch = epoch as i64;
        match self.with_client(|c| {
            c.execute(
                "UPDATE emq_lease SET expires_at = '-infinity' WHERE id = 1 AND epoch = $1",
                &[&epoch],
            )
        }) {
            Ok(_) => info!("lease on {} released (epoch {epoch})", self.shown),
            Err(e) => warn!(
                "cannot release the lease on {}: {e} (a standby takes over when it runs out)",
                self.shown
            ),
        }
    }

    fn peers(&self) -> Option<HaStatus> {
        Some(HaStatus {
            active: self.name.clone(),
            epoch: self.epoch.unwrap_or(0),
            lease_ms: self.lease.as_millis() as u64,
            standbys: self.standbys.clone(),
        })
    }
}

/// A batch as its final state per key (the last operation on a key wins),
/// in the columns the commit statement takes.
#[derive(Default)]
struct Batch<'a> {
    put_tables: Vec<&'static str>,
    put_keys: Vec<&'a str>,
    put_values: Vec<&'a [u8]>,
    delete_tables: Vec<&'static str>,
    delete_keys: Vec<&'a str>,
    /// Jobs to write: a record or body of `None` is left as it is, an empty
    /// one removed.
    job_keys: Vec<&'a str>,
    job_records: Vec<Option<&'a [u8]>>,
    job_bodies: Vec<Option<&'a [u8]>>,
    /// Jobs whose record and body both go.
    job_deletes: Vec<&'a str>,
}

/// What a batch does to one column of a job: put a value, or remove it
/// (an empty value).
type JobColumn<'a> = Option<&'a [u8]>;

impl<'a> Batch<'a> {
    fn of(ops: &'a [StoreOp]) -> Batch<'a> {
        let mut batch = Batch::default();
        // Per job, in order of first appearance: (record, body).
        let mut jobs: Vec<(&str, JobColumn<'a>, JobColumn<'a>)> = Vec::new();
        let mut job_index: crate::HashMap<&str, usize> = crate::HashMap::default();
        for op in crate::journal::final_ops(ops) {
            let (table, key) = op.row();
            let column: &'a [u8] = match op {
                StoreOp::Put { value, .. } => value,
                StoreOp::Delete { .. } => &[],
            };
            match table {
                Table::Records | Table::Bodies => {
                    let at = *job_index.entry(key).or_insert_with(|| {
                        jobs.push((key, None, None));
                        jobs.len() - 1
                    });
                    if table == Table::Records {
                        jobs[at].1 = Some(column);
                    } else {
                        jobs[at].2 = Some(column);
                    }
                }
                _ => match op {
                    StoreOp::Put { value, .. } => {
                        batch.put_tables.push(table.name());
                        batch.put_keys.push(key);
                        batch.put_values.push(value);
                    }
                    StoreOp::Delete { .. } => {
                        batch.delete_tables.push(table.name());
                        batch.delete_keys.push(key);
                    }
                },
            }
        }
        for (key, record, body) in jobs {
            if record.is_some_and(<[u8]>::is_empty) && body.is_some_and(<[u8]>::is_empty) {
                batch.job_deletes.push(key);
            } else {
                batch.job_keys.push(key);
                batch.job_records.push(record);
                batch.job_bodies.push(body);
            }
        }
        batch
    }
}

/// A Postgres error with what the server said (`db error` alone says
/// nothing).
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// `postgres://user:secret@host/db` shown as `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: Table, key: &str, value: &[u8]) -> StoreOp {
        StoreOp::Put {
            table,
            key: key.into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn a_batch_keeps_the_last_operation_on_each_key() {
        let ops = [
            put(Table::Schedules, "s", b"1"),
            StoreOp::delete(Table::Schedules, "s"),
            put(Table::Queues, "q", b"x"),
            StoreOp::delete(Table::Queues, "r"),
            put(Table::Queues, "r", b"2"),
        ];
        let b = Batch::of(&ops);
        assert_eq!(b.put_tables, ["queues", "queues"]);
        assert_eq!(b.put_keys, ["q", "r"]);
        assert_eq!(b.put_values, [b"x".as_slice(), b"2".as_slice()]);
        assert_eq!(b.delete_tables, ["schedules"]);
        assert_eq!(b.delete_keys, ["s"]);
        assert!(b.job_keys.is_empty() && b.job_deletes.is_empty());
    }

    #[test]
    fn a_jobs_record_and_body_make_one_row() {
        let ops = [
            // A new job: record and body in one row.
            put(Table::Records, "new", b"r1"),
            put(Table::Bodies, "new", b"b1"),
            // Its record rewritten: the body is left alone.
            put(Table::Records, "old", b"r0"),
            put(Table::Records, "old", b"r2"),
            // Gone: one delete.
            put(Table::Records, "done", b"r3"),
            StoreOp::delete(Table::Records, "done"),
            StoreOp::delete(Table::Bodies, "done"),
            // Only its record removed: an empty record.
            StoreOp::delete(Table::Records, "half"),
        ];
        let b = Batch::of(&ops);
        assert_eq!(b.job_keys, ["new", "old", "half"]);
        assert_eq!(
            b.job_records,
            [Some(b"r1".as_slice()), Some(b"r2".as_slice()), Some(b"".as_slice())]
        );
        assert_eq!(b.job_bodies, [Some(b"b1".as_slice()), None, None]);
        assert_eq!(b.job_deletes, ["done"]);
        assert!(b.put_keys.is_empty() && b.delete_keys.is_empty());
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://emq:s3cret@db:5432/emq"),
            "postgres://emq:***@db:5432/emq"
        );
        assert_eq!(redact("postgres://emq@db/emq"), "postgres://emq@db/emq");
        assert_eq!(
            redact("postgresql:///emq?host=/run/pg"),
            "postgresql:///emq?host=/run/pg"
        );
    }
}
