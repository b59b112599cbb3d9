fn main() {
    for _ in 0..5 {
        let net = hermetic::Network::builder()
            .host("a")
            .host("b")
            .build()
            .unwrap();
        net.shape(
            "a",
            &hermetic::LinkShape::delay(std::time::Duration::from_millis(5)),
        )
        .unwrap();
        net.shape("b", &hermetic::LinkShape::default().with_loss(1.0))
            .unwrap();
        drop(net);
    }
    let net = hermetic::Network::builder()
        .host("a")
        .host("b")
        .build()
        .unwrap();
    net.shape(
        "a",
        &hermetic::LinkShape::delay(std::time::Duration::from_millis(5)),
    )
    .unwrap();
    net.close().unwrap();
    println!("done");
}
