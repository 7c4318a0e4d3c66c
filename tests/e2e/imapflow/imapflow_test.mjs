// End-to-end test of the IMAP gateway with Node's imapflow client (node:test).
// Needs a running system: IMAPS_PORT, IMAP_PORT, IMAP_USER, IMAP_PASSWORD and CA_FILE
// come from run_imapflow.py, which starts the mailbox service and a gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ImapFlow } from 'imapflow';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through run_imapflow.py)`);
  return value;
};

const ca = readFileSync(env('CA_FILE'));
const user = env('IMAP_USER');
const pass = env('IMAP_PASSWORD');

function client(options = {}) {
  return new ImapFlow({
    host: '127.0.0.1',
    port: Number(env('IMAPS_PORT')),
    secure: true,
    auth: { user, pass },
    tls: { ca: [ca] },
    logger: false,
    disableAutoIdle: true,
    ...options,
  });
}

const message = (subject) =>
  Buffer.from(
    'From: Alice <alice@example.org>\r\n' +
      'To: Bob <bob@example.org>\r\n' +
      `Subject: ${subject}\r\n` +
      'Date: Mon, 5 Jan 2026 10:00:00 +0000\r\n' +
      'Message-ID: <' + subject.replace(/\W/g, '') + '@example.org>\r\n' +
      '\r\n' +
      `Body of ${subject}.\r\n`,
  );

const withTimeout = (promise, ms, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms)),
  ]);

let main;

before(async () => {
  main = client();
  await main.connect();
});

after(async () => {
  if (main) await main.logout().catch(() => {});
});

test('capabilities and mailbox list', async () => {
  assert.ok(main.capabilities.has('IDLE'));
  assert.ok(main.capabilities.has('UIDPLUS'));
  await main.mailboxCreate('Receipts');
  const list = await main.list();
  const paths = list.map((box) => box.path);
  assert.ok(paths.includes('INBOX'), JSON.stringify(paths));
  assert.ok(paths.includes('Receipts'), JSON.stringify(paths));
  const inbox = list.find((box) => box.path === 'INBOX');
  assert.equal(inbox.delimiter, '/');
  const status = await main.status('INBOX', { messages: true, uidNext: true });
  assert.equal(typeof status.messages, 'number');
});

test('append, fetch envelope and source, set flags', async () => {
  const raw = message('imapflow one');
  const appended = await main.append('INBOX', raw, ['\\Seen'], new Date('2026-01-05T10:00:00Z'));
  assert.equal(appended.destination, 'INBOX');
  assert.ok(appended.uid >= 1, JSON.stringify(appended, (k, v) => (typeof v === 'bigint' ? String(v) : v)));
  const lock = await main.getMailboxLock('INBOX');
  try {
    const fetched = await main.fetchOne(String(appended.uid), { envelope: true, source: true, flags: true, uid: true }, { uid: true });
    assert.equal(fetched.envelope.subject, 'imapflow one');
    assert.equal(fetched.envelope.from[0].address, 'alice@example.org');
    assert.equal(fetched.envelope.messageId, '<imapflowone@example.org>');
    assert.equal(fetched.source.toString('binary'), raw.toString('binary'));
    assert.ok(fetched.flags.has('\\Seen'));

    await main.messageFlagsAdd(String(appended.uid), ['\\Flagged', '$Important'], { uid: true });
    let again = await main.fetchOne(String(appended.uid), { flags: true }, { uid: true });
    assert.ok(again.flags.has('\\Flagged'));
    assert.ok(again.flags.has('$Important'));
    await main.messageFlagsRemove(String(appended.uid), ['\\Seen'], { uid: true });
    again = await main.fetchOne(String(appended.uid), { flags: true }, { uid: true });
    assert.ok(!again.flags.has('\\Seen'));

    const found = await main.search({ flagged: true }, { uid: true });
    assert.deepEqual(found, [appended.uid]);

    const all = [];
    for await (const msg of main.fetch('1:*', { envelope: true, uid: true })) {
      all.push(msg.envelope.subject);
    }
    assert.ok(all.includes('imapflow one'), JSON.stringify(all));
  } finally {
    lock.release();
  }
});

test('copy and move with UIDPLUS', async () => {
  const lock = await main.getMailboxLock('INBOX');
  try {
    const copied = await main.messageCopy('1:*', 'Receipts');
    assert.equal(copied.destination, 'Receipts');
    assert.ok(copied.uidMap && copied.uidMap.size >= 1);
    const extra = await main.append('INBOX', message('to be moved'));
    const moved = await main.messageMove(String(extra.uid), 'Receipts', { uid: true });
    assert.equal(moved.destination, 'Receipts');
    assert.ok(moved.uidMap.has(extra.uid), JSON.stringify([...moved.uidMap]));
    const left = await main.search({ uid: String(extra.uid) }, { uid: true });
    assert.deepEqual(left, []);
  } finally {
    lock.release();
  }
  const status = await main.status('Receipts', { messages: true });
  assert.ok(status.messages >= 1);
});

test('IDLE gets EXISTS from an append by a second connection', async () => {
  await main.mailboxOpen('INBOX');
  const before = main.mailbox.exists;
  const exists = new Promise((resolve) => main.once('exists', resolve));
  const idling = main.idle();
  // Give the IDLE command time to reach the server before the second client writes.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const second = client();
  await second.connect();
  try {
    await second.append('INBOX', message('from the second connection'));
  } finally {
    await second.logout();
  }
  const event = await withTimeout(exists, 10000, 'exists event during IDLE');
  assert.equal(event.path, 'INBOX');
  assert.equal(event.count, before + 1);
  await main.noop(); // ends IDLE
  await withTimeout(idling, 10000, 'IDLE to end');
});

test('QRESYNC: expunges come as VANISHED, and a reopen gets what changed meanwhile', async () => {
  const sync = client({ qresync: true });
  await sync.connect();
  const other = client();
  try {
    assert.ok(sync.enabled.has('QRESYNC'), 'QRESYNC was enabled');
    await sync.mailboxCreate('Resync');
    const uids = [];
    for (const n of [1, 2, 3]) {
      uids.push((await sync.append('Resync', message(`resync ${n}`))).uid);
    }
    const opened = await sync.mailboxOpen('Resync');
    const { uidValidity, highestModseq } = opened;
    assert.ok(highestModseq > 0n, 'HIGHESTMODSEQ on select');

    // Another client flags the first message and deletes the second.
    await other.connect();
    await other.mailboxOpen('Resync');
    await other.messageFlagsAdd(String(uids[0]), ['\\Seen'], { uid: true });
    await other.messageDelete(String(uids[1]), { uid: true });

    // Told live, by UID.
    const live = new Promise((resolve) => sync.once('expunge', resolve));
    let event;
    for (let i = 0; i < 50 && !event; i++) {
      await sync.noop();
      event = await Promise.race([live, new Promise((r) => setTimeout(() => r(undefined), 100))]);
    }
    assert.ok(event, 'an expunge event');
    assert.equal(event.vanished, true);
    assert.equal(event.uid, uids[1]);

    // Reconnected with the state it had: VANISHED (EARLIER) and the changed flags.
    await sync.mailboxClose();
    const vanished = [];
    const flags = [];
    const onExpunge = (e) => vanished.push(e);
    const onFlags = (e) => flags.push(e);
    sync.on('expunge', onExpunge);
    sync.on('flags', onFlags);
    const reopened = await sync.mailboxOpen('Resync', { uidValidity, changedSince: highestModseq });
    sync.off('expunge', onExpunge);
    sync.off('flags', onFlags);
    assert.equal(reopened.qresync, true, 'the reopen was a QRESYNC select');
    assert.equal(reopened.exists, 2);
    assert.deepEqual(vanished.map((e) => [e.uid, e.earlier]), [[uids[1], true]]);
    assert.equal(flags.length, 1);
    assert.equal(flags[0].uid, uids[0]);
    assert.ok(flags[0].flags.has('\\Seen'));
    assert.ok(flags[0].modseq > highestModseq);
  } finally {
    await other.logout().catch(() => {});
    await sync.logout().catch(() => {});
  }
});

test('wrong password is refused', async () => {
  const bad = client({ auth: { user, pass: 'wrong' } });
  await assert.rejects(bad.connect(), (error) => {
    assert.ok(error.authenticationFailed || /AUTHENTICATIONFAILED|auth/i.test(String(error)), String(error));
    return true;
  });
  bad.close();
});

// OAuth 2.0: imapflow's accessToken picks OAUTHBEARER (RFC 7628) when offered.
// The tokens come from run_imapflow.py, signed by a key the mailbox service trusts.
test('an access token logs in with OAUTHBEARER', async () => {
  const oauth = client({ auth: { user, accessToken: env('OAUTH_TOKEN') } });
  try {
    await oauth.connect();
    assert.ok(oauth.authenticated);
    assert.equal(oauth.authCapabilities.get('AUTH=OAUTHBEARER'), true);
    const mailbox = await oauth.mailboxOpen('INBOX');
    assert.equal(mailbox.path, 'INBOX');
  } finally {
    await oauth.logout().catch(() => {});
  }
});

test('an expired access token is refused with the RFC 7628 error', async () => {
  const expired = client({ auth: { user, accessToken: env('OAUTH_EXPIRED_TOKEN') } });
  await assert.rejects(expired.connect(), (error) => {
    assert.equal(error.authenticationFailed, true, String(error));
    assert.equal(error.serverResponseCode, 'AUTHENTICATIONFAILED');
    assert.deepEqual(error.oauthError, { status: 'invalid_token', schemes: 'bearer' });
    return true;
  });
  expired.close();
});
