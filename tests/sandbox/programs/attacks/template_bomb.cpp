// Compile stage: exponential template instantiation.
template <int N, typename T> struct Bomb {
    using Left = Bomb<N - 1, Bomb<N, T>>;
    using Right = Bomb<N - 1, Bomb<N + 1, T>>;
    static constexpr long value = Left::value + Right::value;
};
template <typename T> struct Bomb<0, T> {
    static constexpr long value = 1;
};
int main() { return Bomb<40, int>::value > 0 ? 0 : 1; }
