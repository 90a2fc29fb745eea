// Stands in for `prisma migrate deploy` and `prisma migrate status` (Prisma cannot run here:
// its engine is downloaded at run time). Same layout: prisma/migrations/<name>/migration.sql,
// applied in name order, each in a transaction, recorded in _prisma_migrations.
//   deploy: apply the pending migrations, then exit (0; 1 on any failure)
//   status: exit 0 when none is pending, 1 when one is (or the database cannot be asked)
"use strict";
const fs = require("fs");
const path = require("path");
const { Client } = require("pg");

const FOLDER = path.join(__dirname, "..", "prisma", "migrations");

async function main(command) {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS _prisma_migrations (
      migration_name TEXT PRIMARY KEY, finished_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
    // one migrator at a time (two releases starting at once)
    await client.query("SELECT pg_advisory_lock(72707)");
    const done = new Set((await client.query("SELECT migration_name FROM _prisma_migrations"))
      .rows.map((row) => row.migration_name));
    const pending = fs.readdirSync(FOLDER).filter((name) => !done.has(name)).sort();
    if (command === "status") {
      console.log(pending.length ? `${pending.length} migration(s) not yet applied: ${pending.join(", ")}`
                                 : "Database schema is up to date!");
      return pending.length ? 1 : 0;
    }
    for (const name of pending) {
      const sql = fs.readFileSync(path.join(FOLDER, name, "migration.sql"), "utf8");
      await client.query("BEGIN");
      await client.query(sql);
      await client.query("INSERT INTO _prisma_migrations (migration_name) VALUES ($1)", [name]);
      await client.query("COMMIT");
      console.log(`applied ${name}`);
    }
    console.log(pending.length ? `${pending.length} migration(s) applied` : "No pending migrations to apply.");
    return 0;
  } finally {
    await client.end();
  }
}

const command = process.argv[2];
if (command !== "deploy" && command !== "status") {
  console.error("usage: migrate.js deploy|status");
  process.exit(2);
}
main(command).then((code) => process.exit(code), (error) => {
  console.error(`migration ${command} failed: ${error.message}`);
  process.exit(1);
});
