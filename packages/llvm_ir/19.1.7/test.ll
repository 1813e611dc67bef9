@.str = private unnamed_addr constant [3 x i8] c"OK\00"

declare i32 @puts(ptr nocapture) nounwind

define i32 @main() {
    call i32 @puts(ptr @.str)
    ret i32 0
}
