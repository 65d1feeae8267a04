// The microphone's samples, mixed to mono, handed to the page in blocks (an AudioWorklet:
// it runs on the audio thread; the page sends each block to the server).
class SerCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.size = opts.blockSize || 4096;
    this.block = new Float32Array(this.size);
    this.fill = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") { this.flush(); }
    };
  }

  flush() {
    if (this.fill > 0) {
      const out = this.block.slice(0, this.fill);
      this.port.postMessage(out, [out.buffer]);
      this.fill = 0;
    }
    this.port.postMessage("flushed");
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) { return true; }
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < input.length; c++) { v += input[c][i]; }
      this.block[this.fill++] = v / input.length;
      if (this.fill === this.size) {
        this.port.postMessage(this.block, [this.block.buffer]);
        this.block = new Float32Array(this.size);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor("ser-capture", SerCapture);
