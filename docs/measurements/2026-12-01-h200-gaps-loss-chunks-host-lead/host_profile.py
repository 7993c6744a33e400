"""cProfile of the host's launch of steps 10-19 (train_step only), for where the host's time goes."""
import cProfile, pstats, sys
sys.path.insert(0, "/tmp/lead")
import train_gpt2_mod as m
prof, calls, original = cProfile.Profile(), [0], m.train_step
def profiled(*args):
    calls[0] += 1
    if 10 <= calls[0] < 20:
        prof.enable()
    try:
        return original(*args)
    finally:
        prof.disable()
m.train_step = profiled
sys.argv = ["train_gpt2_mod.py", *sys.argv[1:]]
m.main()
pstats.Stats(prof).sort_stats("tottime").print_stats(45)
pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
