"""What several test modules share: live clusters driven by hand, random worlds for the
simulator, naive reference schedulers, throwaway servers and Ray clusters."""
