'use strict';
// A small admission gate: at most `max` jobs run at once, at most `queue` more wait their turn,
// and any further one is refused at once (the caller answers 503). The dashboard puts its
// searches (`/api/activity?q=`), which page through the stream, behind one.

const { HttpError } = require('./http.js');

class Gate {
  /** @param max jobs at once; @param queue jobs waiting at most; @param what named in the 503 */
  constructor(max, queue, what) {
    this.max = max;
    this.queue = queue;
    this.what = what;
    this.running = 0;
    this.waiting = [];
    /** The most jobs that ever ran at once (for tests and operators). */
    this.peak = 0;
  }

  /** Runs `job` when a slot is free; rejects with a 503 HttpError when the queue is full. */
  async run(job) {
    if (this.running >= this.max) {
      if (this.waiting.length >= this.queue) {
        const err = new HttpError(503, 'ERR_DASHBOARD_BUSY', `too many ${this.what} at once (at most ${this.max} running, ${this.queue} waiting); retry shortly`);
        err.retryAfter = 1;
        throw err;
      }
      await new Promise((resolve) => this.waiting.push(resolve));
    } else {
      this.running += 1;
    }
    this.peak = Math.max(this.peak, this.running);
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter (running stays the same), else frees.
      if (next) next();
      else this.running -= 1;
    }
  }
}

module.exports = { Gate };
