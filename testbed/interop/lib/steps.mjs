// The steps of a scripted client: each prints "ok - <step>", and the first
// failure prints "not ok - <step>" with its error and exits 1.

// passed names the steps that passed, in order, for the script's summary.
export const passed = [];

export async function step(name, fn) {
  try {
    const result = await fn();
    passed.push(name);
    console.log(`ok - ${name}`);
    return result;
  } catch (err) {
    console.log(`not ok - ${name}`);
    console.error(err?.stack ?? err);
    process.exit(1);
  }
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}
