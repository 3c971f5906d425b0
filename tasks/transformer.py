"""Pre-norm Transformers as haiku functions: a causal character LM and a small ViT, in SP or μP.

A block maps the residual stream ``x`` ``[batch, tokens, width]`` to

    x = x + W_o attention(W_q h, W_k h, W_v h),   h = LayerNorm(x)
    x = x + W_down gelu(W_up LayerNorm(x)),       W_up: width -> 4 width

with ``num_heads`` heads of ``d_head = width / num_heads`` and logits scaled by
``tasks.mup.attention_scale``. All block matrices are ``hidden``; the token/patch embeddings and
learned position embeddings are ``input``; the readout after a final LayerNorm is ``output`` with
width multiplier ``width / base_width``. Call the functions inside ``hk.transform``.
"""

import haiku as hk
import jax
import jax.numpy as jnp

from tasks.mup import Dense, attention_scale

_FFW_MULT = 4


def check_heads(width: int, num_heads: int, base_width: int) -> None:
  """Raises ``ValueError`` unless ``num_heads`` divides both the width and the base width."""
  for name, value in (("width", width), ("base_width", base_width)):
    if value % num_heads:
      raise ValueError(f"num_heads ({num_heads}) must divide {name} ({value})")


def _layer_norm(name: str) -> hk.LayerNorm:
  return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, name=name)


def _attention(h: jax.Array, num_heads: int, scale: float, causal: bool, parametrization: str,
               index: int) -> jax.Array:
  batch, tokens, width = h.shape
  heads = lambda name: Dense(width, "hidden", parametrization, name=f"hidden_{name}_{index}")(
      h).reshape(batch, tokens, num_heads, width // num_heads)
  q, k, v = heads("query"), heads("key"), heads("value")
  logits = scale * jnp.einsum("bqhd,bkhd->bhqk", q, k)
  if causal:
    logits = jnp.where(jnp.tril(jnp.ones((tokens, tokens), bool)), logits, -jnp.inf)
  mixed = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
  return Dense(width, "hidden", parametrization, name=f"hidden_attn_out_{index}")(
      mixed.reshape(batch, tokens, width))


def _blocks(x: jax.Array, depth: int, num_heads: int, causal: bool, parametrization: str,
            base_width: int) -> jax.Array:
  width = x.shape[-1]
  scale = attention_scale(width // num_heads, base_width // num_heads, parametrization)
  for i in range(depth):
    x = x + _attention(_layer_norm(f"norm_attn_{i}")(x), num_heads, scale, causal,
                       parametrization, i)
    h = Dense(_FFW_MULT * width, "hidden", parametrization, name=f"hidden_ffw_up_{i}")(
        _layer_norm(f"norm_ffw_{i}")(x))
    x = x + Dense(width, "hidden", parametrization, name=f"hidden_ffw_down_{i}")(jax.nn.gelu(h))
  return _layer_norm("norm_final")(x)


def _positions(x: jax.Array) -> jax.Array:
  """Adds a learned embedding of each token's position to ``x`` ``[batch, tokens, width]``."""
  tokens, width = x.shape[1:]
  table = hk.Embed(tokens, width, w_init=hk.initializers.TruncatedNormal(1.0),
                   name="input_position")
  return x + table(jnp.arange(tokens))


def char_lm(tokens: jax.Array, vocab_size: int, width: int, depth: int, num_heads: int,
            parametrization: str, base_width: int) -> jax.Array:
  """Next-token logits ``[batch, tokens, vocab_size]`` of the causal LM on ``tokens`` (int)."""
  embed = hk.Embed(vocab_size, width, w_init=hk.initializers.TruncatedNormal(1.0),
                   name="input_embed")
  x = _blocks(_positions(embed(tokens)), depth, num_heads, True, parametrization, base_width)
  return Dense(vocab_size, "output", parametrization, name="output",
               width_mult=width / base_width)(x)


def check_patches(image_size: int, patch_size: int) -> None:
  if patch_size < 1 or image_size % patch_size:
    raise ValueError(f"patch_size ({patch_size}) must divide the image size ({image_size})")


def vit(images: jax.Array, num_classes: int, patch_size: int, width: int, depth: int,
        num_heads: int, parametrization: str, base_width: int) -> jax.Array:
  """Class logits of a ViT on ``images`` ``[batch, height, width, channels]``.

  Non-overlapping ``patch_size`` squares are flattened and projected (``input_patches``), blocks
  attend over all patches, and the readout reads the mean over patches.
  """
  batch, height, image_width, channels = images.shape
  for size in (height, image_width):
    check_patches(size, patch_size)
  p = patch_size
  patches = images.reshape(batch, height // p, p, image_width // p, p, channels)
  patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, -1, p * p * channels)
  x = _positions(Dense(width, "input", parametrization, name="input_patches")(patches))
  x = _blocks(x, depth, num_heads, False, parametrization, base_width)
  return Dense(num_classes, "output", parametrization, name="output",
               width_mult=width / base_width)(x.mean(axis=1))
