// A durable adapter for oidc-provider, on SQLite as ours is by default, for
// bench/oidc.py --their-store sqlite.
//
// oidc-provider's default adapter keeps grants and refresh tokens in an LRU
// cache in memory, which its documentation says is for development only. Ours
// keeps them in the database (WAL, synchronous=NORMAL, as core/db.py sets), so
// that a refresh survives a restart and rotates safely across several nodes.
// With this adapter oidc-provider writes its models to a SQLite file with the
// same settings, and its findAccount reads the person's standing from it, as
// our refresh reads the person's status and clearance: the two are then
// configured alike for refresh too. Client credentials store nothing either way
// (JWT access tokens are not saved).

import Database from 'better-sqlite3';

let db;
let statements;

export function openStore(path) {
  db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 10000');
  db.exec(`
    CREATE TABLE IF NOT EXISTS model (
      kind TEXT NOT NULL, id TEXT NOT NULL, payload TEXT NOT NULL,
      grant_id TEXT, uid TEXT, user_code TEXT, expires_at INTEGER,
      PRIMARY KEY (kind, id)
    );
    CREATE INDEX IF NOT EXISTS model_grant ON model (grant_id);
    CREATE INDEX IF NOT EXISTS model_uid ON model (uid);
    CREATE INDEX IF NOT EXISTS model_user_code ON model (user_code);
    CREATE TABLE IF NOT EXISTS account (
      id TEXT PRIMARY KEY, status TEXT NOT NULL, clearance_until TEXT NOT NULL
    );
  `);
  statements = {
    upsert: db.prepare(`INSERT INTO model (kind, id, payload, grant_id, uid, user_code, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (kind, id) DO UPDATE SET payload = excluded.payload,
        grant_id = excluded.grant_id, uid = excluded.uid, user_code = excluded.user_code,
        expires_at = excluded.expires_at`),
    find: db.prepare('SELECT payload, expires_at FROM model WHERE kind = ? AND id = ?'),
    findByUid: db.prepare('SELECT payload, expires_at FROM model WHERE kind = ? AND uid = ?'),
    findByUserCode: db.prepare('SELECT payload, expires_at FROM model WHERE kind = ? AND user_code = ?'),
    consume: db.prepare(`UPDATE model SET payload = json_set(payload, '$.consumed', ?)
      WHERE kind = ? AND id = ?`),
    destroy: db.prepare('DELETE FROM model WHERE kind = ? AND id = ?'),
    revoke: db.prepare('DELETE FROM model WHERE grant_id = ?'),
    account: db.prepare('SELECT status, clearance_until FROM account WHERE id = ?'),
    addAccount: db.prepare(`INSERT OR REPLACE INTO account (id, status, clearance_until)
      VALUES (?, 'active', ?)`),
  };
}

export function addAccounts(ids, clearanceUntil) {
  const add = db.transaction((all) => { for (const id of all) statements.addAccount.run(id, clearanceUntil); });
  add(ids);
}

// Like our refresh's read of the person: active, and clearance not lapsed today.
export function findAccount(_ctx, sub) {
  const row = statements.account.get(sub);
  const today = new Date().toISOString().slice(0, 10);
  if (!row || row.status !== 'active' || row.clearance_until < today) {
    return undefined;
  }
  return { accountId: sub, claims: () => ({ sub }) };
}

const now = () => Math.floor(Date.now() / 1000);

function live(row) {
  if (!row || (row.expires_at && row.expires_at < now())) {
    return undefined;
  }
  return JSON.parse(row.payload);
}

export class SqliteAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    statements.upsert.run(this.model, id, JSON.stringify(payload), payload.grantId ?? null,
      payload.uid ?? null, payload.userCode ?? null, expiresIn ? now() + expiresIn : null);
  }

  async find(id) {
    return live(statements.find.get(this.model, id));
  }

  async findByUid(uid) {
    return live(statements.findByUid.get(this.model, uid));
  }

  async findByUserCode(userCode) {
    return live(statements.findByUserCode.get(this.model, userCode));
  }

  async consume(id) {
    statements.consume.run(now(), this.model, id);
  }

  async destroy(id) {
    statements.destroy.run(this.model, id);
  }

  async revokeByGrantId(grantId) {
    statements.revoke.run(grantId);
  }
}
