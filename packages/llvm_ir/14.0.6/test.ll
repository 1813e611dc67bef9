@.str = private unnamed_addr constant [3 x i8] c"OK\00"

declare i32 @puts(i8* nocapture) nounwind

define i32 @main() {
    %str = getelementptr [3 x i8], [3 x i8]* @.str, i64 0, i64 0
    call i32 @puts(i8* %str)
    ret i32 0
}
