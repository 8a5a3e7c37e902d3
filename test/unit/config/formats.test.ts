import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkCron,
  checkHttpUrl,
  checkName,
  checkPartFileName,
  checkTimezone,
  formatBytes,
  formatDuration,
  parseDuration,
  parseSize,
} from '../../../src/config/formats.ts';

describe('parseDuration', () => {
  const good: [string | number, number][] = [
    ['90s', 90_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['250ms', 250],
    ['1.5h', 5_400_000],
    [' 5m ', 300_000],
  ];
  for (const [input, expected] of good) {
    test(`${JSON.stringify(input)} → ${expected} ms`, () => {
      assert.equal(parseDuration(input), expected);
    });
  }

  // A bare number is refused too: `timeout: 7200` would otherwise silently be 7.2 seconds.
  const bad: unknown[] = ['5 minutes', '5M', '1w', '5', '', '0s', '-5m', '1e3s', 'Infinity', 'soon', 5000, 7200, 0, -1, NaN, Infinity, null, undefined, true, [5]];
  for (const input of bad) {
    test(`rejects ${JSON.stringify(input) ?? String(input)}`, () => {
      assert.throws(() => parseDuration(input), /must be a duration with a unit, like 90s, 5m, 2h or 1d/);
    });
  }

  test('the message quotes the bad value', () => {
    assert.throws(() => parseDuration('5 minutes'), /got "5 minutes"/);
  });

  test('a positive duration too small to be a whole millisecond is not turned into 0', () => {
    // parseDuration promises a positive duration: 0 ms would mean "time out at once".
    for (const input of ['0.4ms', '0.0001s']) {
      let result: number | null;
      try {
        result = parseDuration(input);
      } catch {
        result = null;
      }
      assert.ok(result === null || result >= 1, `parseDuration(${JSON.stringify(input)}) returned ${result}`);
    }
  });
});

describe('parseSize', () => {
  const good: [string | number, number][] = [
    ['512MiB', 512 * 1024 ** 2],
    ['50GiB', 50 * 1024 ** 3],
    ['1024', 1024],
    [1024, 1024],
    ['1B', 1],
    ['1KiB', 1024],
    ['1.5KiB', 1536],
    ['2TiB', 2 * 1024 ** 4],
    ['1 GiB', 1024 ** 3],
  ];
  for (const [input, expected] of good) {
    test(`${JSON.stringify(input)} → ${expected} bytes`, () => {
      assert.equal(parseSize(input), expected);
    });
  }

  const bad: unknown[] = ['10XB', '512MB', '512mib', '1KB', '0', '0.5', '-1', '1e3', 'lots', '', '9007199254740993', '8192TiB', 0, -1, 1.5, NaN, null, undefined];
  for (const input of bad) {
    test(`rejects ${JSON.stringify(input) ?? String(input)}`, () => {
      assert.throws(() => parseSize(input), /must be a size like 512MiB, 50GiB or a number of bytes/);
    });
  }
});

describe('checkCron', () => {
  for (const pattern of ['0 3 * * *', '15 2 * * *', '*/10 * * * *', '0 3 * * MON-FRI', '0 3 * * 7']) {
    test(`accepts the 5-field pattern "${pattern}"`, () => {
      assert.doesNotThrow(() => checkCron(pattern));
    });
  }

  for (const pattern of ['*/10 * * * * *', '30 15 2 * * *']) {
    test(`accepts the 6-field pattern with seconds "${pattern}"`, () => {
      assert.doesNotThrow(() => checkCron(pattern));
    });
  }

  test('accepts a pattern in another time zone', () => {
    assert.doesNotThrow(() => checkCron('0 3 * * *', 'Europe/Berlin'));
  });

  const badRange = ['61 * * * *', '0 25 * * *', '0 3 32 * *', '0 3 * 13 *', '0 3 * * 8', '60 0 3 * * *', 'a b c d e', '0 2 30 2 *'];
  for (const pattern of badRange) {
    test(`rejects the invalid pattern "${pattern}"`, () => {
      assert.throws(() => checkCron(pattern), new RegExp(`invalid cron pattern ${JSON.stringify(pattern).replace(/[*]/g, '\\*')}`));
    });
  }

  for (const pattern of ['0 3 * *', '0 0 3 * * * *', '@daily', '3']) {
    test(`rejects "${pattern}" for its number of fields`, () => {
      assert.throws(() => checkCron(pattern), /5 fields \(or 6 with seconds\)/);
    });
  }

  for (const pattern of ['', '   ', 3, null, undefined]) {
    test(`rejects the non-pattern ${JSON.stringify(pattern) ?? String(pattern)}`, () => {
      assert.throws(() => checkCron(pattern), /must be a cron pattern like "0 3 \* \* \*"/);
    });
  }
});

describe('checkTimezone', () => {
  for (const zone of ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Etc/GMT+5']) {
    test(`accepts ${zone}`, () => {
      assert.doesNotThrow(() => checkTimezone(zone));
    });
  }

  for (const zone of ['Mars/Olympus', 'Europe/Atlantis', 'Not A Zone']) {
    test(`rejects ${zone}`, () => {
      assert.throws(() => checkTimezone(zone), new RegExp(`unknown time zone "${zone}"`));
    });
  }

  for (const zone of ['', null, 5, undefined]) {
    test(`rejects the non-name ${JSON.stringify(zone) ?? String(zone)}`, () => {
      assert.throws(() => checkTimezone(zone), /must be a time zone name like UTC/);
    });
  }
});

describe('checkName and checkPartFileName', () => {
  test('names: lower-case letters, digits, ".", "_", "-", at most 63 characters', () => {
    for (const name of ['shop', 'db1', 'a', '0', 'my-app_2.prod', 'a'.repeat(63)]) assert.doesNotThrow(() => checkName(name), name);
    for (const name of ['Shop', '../x', '.hidden', '-x', '_x', 'a/b', 'a b', '', 'a'.repeat(64), 'é', 5, null]) {
      assert.throws(() => checkName(name), /must match/, String(name));
    }
  });

  test('part file names: plain names, never manifest.json or SHA256SUMS', () => {
    for (const file of ['shop.sql', 'uploads.tar', 'Data_2.tar.gz', 'x', 'A'.repeat(128)]) assert.doesNotThrow(() => checkPartFileName(file), file);
    for (const file of ['a/b.sql', '../x', '.hidden', '/etc/passwd', 'a b', '', 'A'.repeat(129), null]) {
      assert.throws(() => checkPartFileName(file), /must be a plain file name/, String(file));
    }
    assert.throws(() => checkPartFileName('manifest.json'), /"manifest.json" is reserved/);
    assert.throws(() => checkPartFileName('SHA256SUMS'), /"SHA256SUMS" is reserved/);
  });
});

describe('formatBytes', () => {
  const cases: [number, string][] = [
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [1024 ** 2, '1.0 MiB'],
    [512 * 1024 ** 2, '512.0 MiB'],
    [50 * 1024 ** 3, '50.0 GiB'],
    [1.5 * 1024 ** 4, '1.5 TiB'],
    [1024 ** 5, '1024.0 TiB'],
  ];
  for (const [bytes, expected] of cases) {
    test(`${bytes} → ${expected}`, () => {
      assert.equal(formatBytes(bytes), expected);
    });
  }
});

describe('formatDuration', () => {
  test('gives the shortest exact unit, and round-trips through parseDuration', () => {
    const cases: [number, string][] = [
      [90_000, '90s'],
      [300_000, '5m'],
      [7_200_000, '2h'],
      [86_400_000, '1d'],
      [1500, '1500ms'],
    ];
    for (const [milliseconds, text] of cases) {
      assert.equal(formatDuration(milliseconds), text);
      assert.equal(parseDuration(text), milliseconds);
    }
  });
});

describe('checkHttpUrl', () => {
  test('accepts http and https URLs, with tokens in path or query', () => {
    for (const url of ['https://hc-ping.com/5f1d', 'http://127.0.0.1:8080/hook?token=abc']) assert.doesNotThrow(() => checkHttpUrl(url));
  });
  test('rejects other schemes and junk', () => {
    for (const url of ['ftp://x/y', 'not a url', '', 42]) assert.throws(() => checkHttpUrl(url), /must be an http:\/\/ or https:\/\/ URL/);
  });
  test('rejects user:password@ without repeating the password (fetch refuses such URLs)', () => {
    assert.throws(() => checkHttpUrl('https://alerts:S3cr3t@example.com/hook'), (error: Error) => {
      assert.match(error.message, /must not contain a user or password/);
      assert.doesNotMatch(error.message, /S3cr3t/);
      return true;
    });
  });
});
