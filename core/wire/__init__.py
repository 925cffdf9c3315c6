"""The data plane's messages: how hidden states and control messages travel on a stream. No pickle, ever.

- `framing`: frames on a hivemind raw stream (an 8-byte length, then the body), size limits, JSON frames.
  Standard library only: the join handshake and other light code use it without loading torch.
- `control`: the typed control messages of inference sessions (open, opened, error, drain, history, relink, …)
  with their error codes and drain reasons, built on core/typed_json.py. Standard library only.
- `tensors`: step frames (one step's hidden states, raw bytes behind a fixed binary header) and
  acknowledgements, and `decode_frame`, which tells the three kinds apart. Imports torch.
"""
