program OK;
begin
    writeln('OK');
end.
