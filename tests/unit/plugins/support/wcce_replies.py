# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reply stubs captured from the lab CA (after verification and unsealing, 2026-12-02, ECDSA P-256 on
WebServerECC): Request2 issued (~5 KB full response), Request2 denied (unknown template), Request issued.

Stored zlib-compressed: each entry is a name length byte, the name, a little-endian 32-bit size, the stub."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import struct
import zlib

OPNUMS = {
    'request2_denied': 6,
    'request2_issued': 6,
    'request_issued': 3,
}

_PACKED = (
    'eNrtWAdYU9mXfwmhd+kCgqiASHkJBClSQxUEpauAhhSIIiUJYLASDFIVQVFAkCLgwIAoiqigAg69KyiKCIIUAWWk6QCyL7HOrP/d'
    '2W93vv12v7x8ueeec+8957xz7v197x5hMiE4hEChovbgCQEkAj4aBnx7tPmhxob3OPCXx401B86iFgABCABIUIsHFAEfgAa124FA'
    'wB+S4VjcNojDAyGQhABxigAIHAT0oBYE9AGdLz11SO4C+LFmkKE2GJpPACgAFeLDACzUUwSIkB4yRLHQHweNkqFREiRl2sFCfeZa'
    'ZnsACIJsfZf4sfqK0DymlgBIC5OjQBaCoF8gS8+P3lO/+GEG6WVaCGVxFlCP6RlTxlzDnIn5F144s+ShLBmBZTXoh4gYQLwDxDtD'
    'HuAgWy5/8VnzW5yFv+WGRKGEEPB6Et9zgIJywwFReeHPuWBSkC4sw8WrFmUTtSAI44Zn0YX5IBEXHAZDAiD/9xFYFl3oLUhHHAXp'
    '8JEsDjgMDhfHAw+GvSySZW562kqdNnm5qdFGjAwKflsD4+cEQHekOLiKi483STkm+b06HiYjiaBC7v17KRaPoyDFQNE/STn8sT6s'
    'qRyuCA4Bfnszc0WnwECqIsYMXCMliNJFokAUqIPW19HeJSWoo4tEojZ/Yf85w3RYzo8vCeMEOOiw01AgYbFwOiwCKMlcjsqzk6eg'
    'CiZdlkON0l+kfeK1Ec9HEyR0iHdUSOXdxLXqz7mbe+YQk6Xj6bT5PWe0BLpX5SMeqEf2oam8MRj/6pJ+DYQbQ7YqfkLgIwNtOF0V'
    'hl+nYrMqvcQBiawZePcxNWHD7kRVvFvrpLK4470UZCWjVKd7LvmFul28mnt6Q2+BSnafj4wP8s3D/cetDXM2+QoXg/K7SnluaM86'
    '2KsOb9oQH/s42l/q3cnYe7hpOeed2hKvShutPNXoJiV5thkRD6fj7GseX1Wb42iqwe+TbnxXpv1pnemZdN6i2H3nkNMfriTYvXoZ'
    'k3TS5tKNzdjIVtOWZFvB9p67EfLRgum+6NuJ6GE5RW/OTP23MSp3L3k8erIxdV69ZyDc2jPDpW5HfFt6F34PuTxD0lLyWb4dltvo'
    '/L06OZGqXhh/qm7IRMqVTT0rN2bsmhWf6cJfvZeQmys7cn6cY2tLD2EbumJnXql+B+Kj12VT+FVJxV9SpBs95jzj0djZi4Hiwoo0'
    'lfWuwkNwDhgAyzUHTVnZkxeDwVYQPCAXRKBNDW1pSCaMQEA7OAqUZzJCCEmEuKValFHluWucg8g9D6PFx4vEtkVj/7KVOZjJDdLh'
    'bX+d4hAnZyRa8TbiWcqS+Z1Tl/TzngShCAo3i9denB3D+Tfszdt7Vpl0wyDbLeqhhafnu3t9lkISQsRqA46SthGy3B3V1lol48jG'
    'W8Zez0cEnHcwmpC3QjmdnB4v8mfdaqZw89UHbjM+qLpm18v38rNTBTjOV9Fqrz0E3hXBVrJzBEiF0tS4knnzX2mgJ49+0tv5LVET'
    'G3gJ70b57D6ed1GiIKN3bR24vnH0/hUua1g9tv6DbOjoybLbymdrEHLN9j3K+YbtEx2oKFCZHl6rRBJpPDZ1sT/PW+SRiBmeAd76'
    'yHPGKj5MICX8cektfMruoposwx6j7dYDv2Z2X7W5eU7bcvdS31vjLTufx4k8g8nyJQ5OonNfl5jHZfyySWZNgLvq9qi1jWKPbFbx'
    'BmXzxim1d037aZrU2E92pM3oZeNbnWRb7amVCmseWyU0Dloa97/UoAwTXlXqPuykdDuQY58XgjEx4cSTKi+Wtaeqp3fnTNlX7w1d'
    'WpQZXbDUzmZEGooXQQiUBtI54F8QCMP/SLFp2pLrNqOuaNrumo+IqzH4v4hA2kwE0v+KQE7/fcPC0MuwDHNBhjX+DvgEPTn0lvB0'
    'clTdTE6UfyopY8uk1/2bgLACWcHBvbNzzTiszo5jJ41HIO22y9L9WFkGPjHg+upLsCFeRx4y9pREQofsEZudKWkizd20p90LmT25'
    '/X0dppcjZnll4BXzzc+UXNc2LW3FOlhx1SQvEc8uVTzdnzmSKn0VTZrX3iyn11Guv+PQwuVbo12nOhfF+ZddMv+gkfTFd5OHXIL1'
    'V91ceieSUOYsp3eAyKcxYRJ5I+D14sp+x1ceg/raie33nUOnG/cTaIa0w71SuAlbl6PW5cIJpiqVNGQ131IcRnX4RSYP/aWI0dGD'
    'ZcqgI0gbuoApnCYeoY33d8cH3GwgGXqbH5LTXXm6fG53ffSLg3nogU68OepXLD5fildAUrWX1HEAFuZZ+tB1qNxwX4NaOTqOcSfg'
    'zpsVUkr6yzznooXrd6eiU+Y2iFUXrW/Xr0hmOD9n6BurLY7vl+1tSTBuz1GBb1xKzMUiAyWdK7OH4wnH4nQ09rR4jCvnnt9fUn0s'
    'ebC16/Zn8MGB2J+AD/CvwKetzLqAl+uZlEUB6kzlnrqra3ZVtoAKzOF1CGlQ8vjfRic7gLvQqzgvre4mNXClxB55hHrAIMyktE5u'
    'b05GriGaSmac2Vtl2Pop4b5lkcPyiYptnQjU9aauskxRbV+zkKHfW7YU2vCl8nAEoR0l3EgygTreYePEQMfKRUp4ydqgJFEJ62ib'
    '+aKQp82TkQQrvzZcg+5BFV3XD2dSLzaaJlbh6nnrHvDXagzMm4Sg5WoGPTa2zBXgJLijwLhtSrVWNCutK6Hp8w0PrAYy/RZoBeWa'
    '1+ZNRjAH8p8ovFY/WDopUOI2PRrhd0mrXq3wQsTemU/Ey4IDfDb6SHoxLV7MYN0nLrmLZvWm2ebTCJHSEx9c/TeM1h3YqhJi6S3D'
    'j6QUHAVl7/jqPsLkH56uG61eUVM5znPL4mNz8FH7YzFlYHbQ+izavXllq6ax3LF7B1u2TvGcr5aNXnpzvt7fwCekxfm92RnrQ+XS'
    'DxyGGLcLOlqGbU9oumH7ZtbJ3kBr16jWHR9ylzSXcjW//QFZ9QffI1i98xODxvfWcc93qP2qXFy7ELPxnsLIIZDO2QQhFOozOomJ'
    'AwA/amxiJHVFaOQS85OLH/VXcPonMOI7Lm1G62rrQLiE0oNYJKgHMllQDrkalP68RBSHDdKElGgy1WsyLYM7QTEubsjFNiM4jIuH'
    '1eGAcXOYAwgGOmPdYd3sjJObez4ZRc7XSNYYCrbgNfyuh6IT4jNuqvAFF+gcG53h97h10uG0ogWfOMOxZNI9dVIwVGX/dXkPai6d'
    'QxrCbnFwCxfvJi4YAkbfLMGN0AI1uDZ8ZXnocYMWJ669NpzOwkX2tO5lTPV6S9Hn6o9FNNWawWF4KKyQe9DB2IAQAPm4eKB1nJzc'
    'HDBQ9rtKPoQQ+OdBIdaxYx5F6ORxH//h5C0uB6OlvXxHf9HYFdtU3JY8s75ly59O3k+PJh3GOsgKCDrkTsQKGLGUFfExK2I+KqLc'
    'H48NMtDS0sI4GH3OhjrU225nq2Hr7Oxq62DNzA9ThLHYzhoJ8fEn4RTtCDRFZwI5lIQjUJjiH/uYwAAiyTeEjKWSAgPULTBGULqY'
    'hJkxJmUmzQRHIFNJRBIOSyU4EUIDcazJ9iRoxAdLIZgE+uwj4KgYfyyFYoRzsreABsgknxDmpO2BpABqlKEflcr0O2g/SYN5byAF'
    '+GrgsCDyz3tDCwOZsQwgB/r7a31+O00c2R8Kx7qvwYbBoJhIQBJRMCL/qxCER0Wk/jQwZrZm/6NRMMN8j8NP3vzbIKTDLITqF0gm'
    'UWkg8Qc/d/2X4/Afz9zzLUxUUI65Z0QREqAY/SfH7idoLmQwXPaAsr6Em1okPWS9qDB8NCD/ZFj20whPJ6EX2h4ii44onBB6xK0s'
    'v+ryTEaPFhEbXk25cPjmNZM7mOGyHOu2aIM8bXnORv7rzjObbTov4+0utlmEBhdRKEWSwwdNUV1KsPJx/4nWc8rjetuDQ27IaJcW'
    'O+iZFtn5mM8Qhd7sO5+kUiHrkVYvFD2Dp1VSkcuG3rKKVzAbp5VXu4phue9uKQq8PGD5Kltgd7C5enohpsF99WTIKq0VRuSmTl/j'
    'lwUCS7XhCld//wPsd+nVXonvaiY4tkT4+9CnsFk1j9VEc4VOJ0SvhY+nyIV0J7354DNxTjk4/I9VUUblsxcMLKvlUUqHrfzOReEz'
    'GRq0gvTMiuL2Utu0GIPg3Z+8uQLuU8OOCdg5ljm+IvyuIbfJ4pH+bx2LtafESo0FWjvzxYDJDm+TtPJrW5VSBohTcYf6+9tlFfsY'
    'ic28qy56WxV27Xq+9Vxffi13iynnb/sk5gYlrR/veMeDzj+r1jlnN6mQpN/RmwIimZDdxgkACOiuzKRseGfDOxve2fDOhvf/D/AO'
    'AEIQZvNA2M6ktgCFVd9lVnW/PkJfaqk/KaXqsEup7FIqu5TKLqWyS6nsUiq7lMoupbJLqf94KVXnxaXK9qL+cNZnGL8O+67Nvmuz'
    '79rsu/bfuWv7RjcROtQyg4djxN5I/FbRRzrW8PsJMl6vRP1DnWHO0AVfkSPXZTYdO63bMB82uOfy+f4TVQHJb93ABU1ixf6+rq0r'
    'EaGEujYj2WDic+t9p7c985+Ml7g0nrBDptlnbtuyd/Jar3xVVPiDtx87HtBWp987pexySDs7sWrtTtnzK92zH3q6VjCBY42xQl7n'
    '5Ca6Otw967hoQxg198KxyqRnRKsn8Fo6w4mz94iweix18DB4K+y4XYre7EunmbMu6kuzJd6WB5SHkPaPL8SulPl3LkSi554XB4se'
    'GR07zF0RQLwLH1hOr0Yc1jtZP2ljW9j/qAm9ww93tC53R54WaHC//9Shbbk7j5CiTeveuqVz9q62tWjY0FNQM5aDUR6jtz22zwka'
    'EKQXrmm1TD3y8up7VSV9zcvU+ts7qpvKRdo2VtkkLAjXr5V3S7TetTFk2KsszXSshzi7U+dAb3+zhxfSeMsz+WTh3Wlem3POPNGM'
    'fdFHpHRJ1bqfDG4fblceG6moLk7SiO6U+DulVDa8s+GdDe9seGfD+/85eP/PS6n/Bjh9OK0='
)


def _unpack(data):
    out, off = {}, 0
    while off < len(data):
        name = data[off + 1:off + 1 + data[off]].decode()
        off += 1 + data[off]
        size = struct.unpack_from('<L', data, off)[0]
        out[name] = data[off + 4:off + 4 + size]
        off += 4 + size
    return out


REPLIES = _unpack(zlib.decompress(base64.b64decode(_PACKED)))
