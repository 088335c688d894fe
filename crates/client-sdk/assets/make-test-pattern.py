# Makes test-pattern.ivf, the VP8 clip the SDK sends as its built-in test video source.
# Run: python3 make-test-pattern.py && vpxenc --codec=vp8 -w 320 -h 240 --fps=15/1 \
#   --kf-max-dist=15 --kf-min-dist=15 --target-bitrate=300 --good --cpu-used=4 --ivf \
#   -o test-pattern.ivf /tmp/pattern.yuv      (vpxenc: Debian package vpx-tools)
# A 2-second test pattern (320x240, 15 fps, I420): colour bars, a bouncing square, a moving stripe.
W, H, N = 320, 240, 30
bars = [(235,128,128),(210,16,146),(170,166,16),(145,54,34),(106,202,222),(81,90,240),(41,240,110),(16,128,128)]
out = bytearray()
for f in range(N):
    Y = bytearray(W*H); U = bytearray((W//2)*(H//2)); V = bytearray((W//2)*(H//2))
    sq = 48; t = f / N
    sx = int((W - sq) * (0.5 - 0.5 * __import__('math').cos(2*3.14159*t)))
    sy = int((H - sq) * (0.5 - 0.5 * __import__('math').sin(2*3.14159*t)))
    stripe = int(W * t)
    for y in range(H):
        for x in range(W):
            b = bars[x * 8 // W]
            yv, uv, vv = b
            if sx <= x < sx+sq and sy <= y < sy+sq: yv, uv, vv = 235, 128, 128
            elif abs(x - stripe) < 4 and y > H*3//4: yv, uv, vv = 16, 128, 128
            Y[y*W+x] = yv
            if y % 2 == 0 and x % 2 == 0:
                U[(y//2)*(W//2)+x//2] = uv; V[(y//2)*(W//2)+x//2] = vv
    out += Y + U + V
open('/tmp/pattern.yuv','wb').write(out)
