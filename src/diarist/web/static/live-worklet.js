// The live view's audio worklet: the microphone's samples, at the audio context's rate, resampled to
// 16 kHz mono and posted in frames of 1600 (100 ms), as the live stream protocol wants them.

const FRAME = 1600;
const RATE = 16000;

class Pcm16k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / RATE; // input samples per output sample (sampleRate: the worklet's global)
    this.position = 0; // where the next output sample falls, in input samples from the block's start
    this.previous = 0; // the last input sample of the block before, for interpolation across blocks
    this.frame = new Float32Array(FRAME);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const length = channels[0].length;
    const input = new Float32Array(length);
    for (const channel of channels) for (let i = 0; i < length; i++) input[i] += channel[i] / channels.length;
    // Linear interpolation between input samples; speech below 8 kHz survives it well enough to diarize.
    while (this.position < length) {
      const index = Math.floor(this.position);
      const fraction = this.position - index;
      const before = index === 0 ? this.previous : input[index - 1];
      this.frame[this.filled++] = before + (input[index] - before) * fraction;
      if (this.filled === FRAME) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Float32Array(FRAME);
        this.filled = 0;
      }
      this.position += this.step;
    }
    this.position -= length;
    this.previous = input[length - 1];
    return true;
  }
}

registerProcessor("pcm-16k", Pcm16k);
