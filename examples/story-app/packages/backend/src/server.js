// The story's backend in miniature: GET /api/health in the story's shape (database and Redis
// asked), and /api/items (rows in PostgreSQL). Ends gracefully on SIGTERM: in-flight requests
// finish, then it exits.
"use strict";
const express = require("express");
const { Pool } = require("pg");
const { createClient } = require("redis");

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
const redis = createClient({ url: process.env.REDIS_URL });
redis.on("error", () => {});   // reconnects by itself; /api/health reports it meanwhile

const app = express();
app.use(express.json());
app.use((req, res, next) => {
  res.set("X-App-Version", process.env.APP_VERSION || "unknown");
  next();
});

app.get("/api/health", async (req, res) => {
  try {
    await pool.query("SELECT 1");
    await redis.ping();
    res.json({ success: true, data: { status: "healthy", timestamp: new Date().toISOString() } });
  } catch (error) {
    res.status(503).json({ success: false, error: { message: error.message } });
  }
});

app.get("/api/items", async (req, res) => {
  const { rows } = await pool.query("SELECT name FROM items ORDER BY id");
  res.json({ success: true, data: rows });
});

app.post("/api/items", async (req, res) => {
  const name = String((req.body || {}).name || "");
  await pool.query("INSERT INTO items (name) VALUES ($1)", [name]);
  res.status(201).json({ success: true, data: { name } });
});

async function start() {
  await redis.connect().catch(() => {});
  const server = app.listen(Number(process.env.PORT || 4000), () => {
    console.log(JSON.stringify({ level: "info", msg: "listening", port: process.env.PORT }));
  });
  process.on("SIGTERM", () => {
    server.close(() => {
      Promise.allSettled([pool.end(), redis.quit()]).then(() => process.exit(0));
    });
    setTimeout(() => process.exit(0), 10000).unref();
  });
}
start();
